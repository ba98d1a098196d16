//! The canonical formatter of `.flow` files.
