//! An entry of a pool's queue.

use crate::future::{FutureCell, TaskTypes};
use std::sync::Arc;
use std::time::Instant;

/// A queued future, and when it was queued if its wait is to be timed (with how many queued
/// futures its wait stands for: see `crate::stats::Sampler`).
pub(super) struct Queued<T: TaskTypes> {
    pub(super) cell: Arc<FutureCell<T>>,
    pub(super) stamp: Option<(Instant, u32)>,
}
