//! JoinableQueue's count of unfinished tasks: a record put with `task` counts one (in the same
//! step as it is published), `task_done` counts one out, `join` waits for none.

use super::layout::Ring;
use std::sync::atomic::Ordering;

impl Ring {
    /// Counts a task out; `false` if none was unfinished (`task_done()` called too often).
    pub fn task_done(&self) -> bool {
        let header = self.header();
        match header
            .unfinished
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        {
            Ok(1) => {
                self.wake_joiners();
                true
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }

    /// Tasks put and not yet done.
    pub fn unfinished(&self) -> u64 {
        self.header().unfinished.load(Ordering::Acquire)
    }
}
