//! `_ThreadDone`: the end of a thread, as `treadle.Thread.join` and `treadle.main_thread().join`
//! wait for it. Its owner in the wait graph is the thread itself, so a join that closes a cycle
//! (a thread joining one that waits for it) is reported.

use crate::runtime::threads::{main_thread, register_current_thread};
use crate::runtime::timeout::optional_wait;
use crate::runtime::tracking::Track;
use crate::runtime::wait::block_until;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use treadle_core::wait_graph::{WaitKind, WaitTarget};
use treadle_core::{Event, ThreadId};

/// The end of a thread.
#[pyclass(frozen, name = "_ThreadDone", module = "treadle")]
pub(crate) struct PyThreadDone {
    done: Event,
    owner: AtomicU64,
    main: bool,
}

impl WaitTarget for PyThreadDone {
    fn owner(&self) -> Option<ThreadId> {
        if self.main {
            return main_thread();
        }
        let owner = self.owner.load(Ordering::Relaxed);
        (owner != 0).then_some(ThreadId(owner))
    }
    fn is_ready(&self, _ticket: u64) -> bool {
        self.done.is_set()
    }
}

#[pymethods]
impl PyThreadDone {
    #[new]
    #[pyo3(signature = (main=false))]
    fn new(main: bool) -> Self {
        PyThreadDone {
            done: Event::new(),
            owner: AtomicU64::new(0),
            main,
        }
    }

    /// Called by the thread itself when it starts running.
    fn bind_current(&self) {
        let me = register_current_thread();
        self.owner.store(me.0, Ordering::Relaxed);
    }

    /// Called by the thread itself when its target has returned (or raised).
    fn finish(&self) {
        self.done.set();
    }

    fn is_done(&self) -> bool {
        self.done.is_set()
    }

    /// Waits for the thread's end; `thread` is what the report names.
    #[pyo3(signature = (thread, timeout=None))]
    fn wait(
        slf: &Bound<'_, Self>,
        thread: &Bound<'_, PyAny>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        if this.done.is_set() {
            return Ok(true);
        }
        let wait = optional_wait(py, timeout)?;
        let ticket = this.done.ticket();
        let track = Track {
            target: this,
            kind: WaitKind::Join,
            ticket: ticket.value(),
            object: thread,
        };
        block_until(py, wait, Some(track), |deadline| {
            this.done.wait_until(ticket, deadline)
        })
    }
}
