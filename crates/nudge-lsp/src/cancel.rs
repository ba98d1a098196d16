//! Cancellation of running work: a flag shared between the message loop,
//! which sets it when the client cancels a request or edits what the
//! request reads, and the worker computing the answer, which checks it
//! between steps and stops early.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

const RUNNING: u8 = 0;
const CANCELLED: u8 = 1;
const MODIFIED: u8 = 2;

/// Why running work was told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The client sent `$/cancelRequest`: answered with `RequestCancelled` (-32800).
    Cancelled,
    /// A newer edit changed what the request reads: answered with
    /// `ContentModified` (-32801).
    Modified,
}

impl Stop {
    /// The JSON-RPC error code the request is answered with.
    pub fn code(self) -> i32 {
        match self {
            Stop::Cancelled => lsp_server::ErrorCode::RequestCanceled as i32,
            Stop::Modified => lsp_server::ErrorCode::ContentModified as i32,
        }
    }

    /// The error message sent with [`Stop::code`].
    pub fn message(self) -> &'static str {
        match self {
            Stop::Cancelled => "canceled by the client",
            Stop::Modified => "the document changed before the answer was ready",
        }
    }
}

/// A cancellation flag; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicU8>);

impl Cancel {
    /// A flag nobody has set yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks the work to stop; the first reason given wins.
    pub fn stop(&self, why: Stop) {
        let value = match why {
            Stop::Cancelled => CANCELLED,
            Stop::Modified => MODIFIED,
        };
        let _ = self
            .0
            .compare_exchange(RUNNING, value, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Why the work should stop, if it should.
    pub fn stopped(&self) -> Option<Stop> {
        match self.0.load(Ordering::Relaxed) {
            CANCELLED => Some(Stop::Cancelled),
            MODIFIED => Some(Stop::Modified),
            _ => None,
        }
    }

    /// `Err` once the work should stop, for `?` between steps.
    pub fn check(&self) -> Result<(), Stop> {
        self.stopped().map_or(Ok(()), Err)
    }
}
