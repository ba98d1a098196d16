//! Semantic analysis of Nudge projects.
