//! `_Unretrieved`: a pool's record of its tasks' failures, so that an exception nobody retrieved
//! is never silent, and in strict mode (`raise_unretrieved=True`) belongs to its pool.
//!
//! Both pools record each failure of their tasks here: the thread pool when a task raises or runs
//! past its time limit, the process pool when a task's exception or its worker's crash comes
//! back. `shutdown(wait=True)` takes those still unretrieved ([`Unretrieved::take`]) and reports
//! them, or raises them as a group in strict mode. A future freed before that reports its own
//! failure at once, except in strict mode, where it leaves it to the ledger: a task of which the
//! program kept no future (`pool.submit(f)` alone, the commonest shape of the mistake) is then
//! still raised by `shutdown()`. Once taken, or when the ledger itself is freed (its pool and
//! every recorded future gone), what is left is reported as a freed future reports it.
//!
//! Why no failure is lost or reported twice: a failure is recorded before its future can be
//! freed (the pool holds the future until it is completed); a freed future leaves its failure to
//! the ledger only while [`Unretrieved::keeps`] holds, read under the ledger's mutex, so `take`
//! (under the same mutex) comes after and finds it; and every report goes through the cell's
//! `take_unreported_failure`, which answers yes once.

use crate::future::{report_lost, Cell, FailureLedger, PyFuture};
use parking_lot::Mutex;
use pyo3::prelude::*;
use std::sync::Arc;
use treadle_core::Outcome;

/// A pool's failed futures, for its `shutdown()`.
pub(crate) struct Unretrieved {
    strict: bool,
    state: Mutex<Ledger>,
}

struct Ledger {
    /// Failed futures' cells, with their names for reports, in the order they failed.
    failed: Vec<(Arc<Cell>, Option<Py<PyAny>>)>,
    /// `take` was called: from now on freed futures report their own failures.
    taken: bool,
}

/// Past this many records, those retrieved since are dropped from the list.
const TRIM_AT: usize = 1024;

impl Unretrieved {
    pub(crate) fn new(strict: bool) -> Self {
        Unretrieved {
            strict,
            state: Mutex::new(Ledger {
                failed: Vec::new(),
                taken: false,
            }),
        }
    }

    /// Records `future`'s failure, if it failed (a future cancelled meanwhile did not).
    pub(crate) fn record(self: &Arc<Self>, py: Python<'_>, future: &Bound<'_, PyAny>) {
        let Ok(future) = future.cast::<PyFuture>() else {
            return;
        };
        let this = future.get();
        if !this.cell.read(false, |_, outcome| {
            matches!(outcome, Some(Outcome::Raised(_)))
        }) {
            return;
        }
        let name = this.name_for_reports().map(|name| name.clone_ref(py));
        let mut state = self.state.lock();
        if state.failed.len() >= TRIM_AT {
            state.failed.retain(|(cell, _)| cell.is_lost());
        }
        state.failed.push((Arc::clone(&this.cell), name));
        drop(state);
        this.recorded_by(Arc::clone(self) as Arc<dyn FailureLedger>);
    }

    /// The exceptions (with their tasks' names) of the recorded failures nobody retrieved, each
    /// handed out once; from now on a freed future reports its own failure.
    pub(crate) fn take(&self, py: Python<'_>) -> Vec<(Py<PyAny>, Py<PyAny>)> {
        let failed = {
            let mut state = self.state.lock();
            state.taken = true;
            std::mem::take(&mut state.failed)
        };
        let mut lost = Vec::new();
        for (cell, name) in failed {
            if !cell.take_unreported_failure() {
                continue;
            }
            cell.read(false, |_, outcome| {
                if let Some(Outcome::Raised(error)) = outcome {
                    let name = name.map_or_else(|| py.None(), |name| name.clone_ref(py));
                    lost.push((error.clone_ref(py), name));
                }
            });
        }
        lost
    }
}

impl FailureLedger for Unretrieved {
    fn keeps(&self) -> bool {
        self.strict && !self.state.lock().taken
    }
}

impl Drop for Unretrieved {
    fn drop(&mut self) {
        let failed = std::mem::take(&mut self.state.get_mut().failed);
        if failed.iter().any(|(cell, _)| cell.is_lost()) {
            Python::attach(|py| {
                for (cell, name) in &failed {
                    if cell.take_unreported_failure() {
                        report_lost(py, cell, name.as_ref());
                    }
                }
            });
        }
    }
}

/// `_Unretrieved(strict)`: what a pool's `shutdown()` reports or raises (see the module's doc).
#[pyclass(frozen, name = "_Unretrieved", module = "treadle")]
pub(crate) struct PyUnretrieved(pub(crate) Arc<Unretrieved>);

#[pymethods]
impl PyUnretrieved {
    #[new]
    fn new(strict: bool) -> Self {
        PyUnretrieved(Arc::new(Unretrieved::new(strict)))
    }

    /// Whether a freed future's failure is left for `take` (`raise_unretrieved=True`).
    #[getter]
    fn strict(&self) -> bool {
        self.0.strict
    }

    /// Records the failure of `future`, a treadle future of the pool (nothing if it did not
    /// fail).
    fn record(&self, future: &Bound<'_, PyAny>) {
        self.0.record(future.py(), future);
    }

    /// The failures nobody retrieved, as `(exception, name)` pairs, each handed out once.
    fn take(&self, py: Python<'_>) -> Vec<(Py<PyAny>, Py<PyAny>)> {
        self.0.take(py)
    }
}
