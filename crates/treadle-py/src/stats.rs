//! What `executor.stats()` returns, as typed records: `ExecutorStats`, with `TimeStats` for task
//! times and queue waits, a `WorkerStats` per worker and, for a process pool, `WorkerRestarts`.
//! Made from the core's [`Snapshot`] (`treadle_core::stats`) of either pool; each has a
//! constructor too, so that an executor gathering its figures in Python (a cluster's) returns
//! the same records, its durations summed up by the core's histogram (`_Durations`). Times are
//! in seconds, as Python's are.

use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::time::Duration;
use treadle_core::stats::{self, Histogram, Restarts, Snapshot, Summary, WorkerSnapshot};

/// Durations summed up: how many, and their mean, median, 99th percentile and maximum in
/// seconds (None when there were none).
#[pyclass(frozen, get_all, name = "TimeStats", module = "treadle")]
pub(crate) struct PyTimeStats {
    count: u64,
    mean: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
}

#[pymethods]
impl PyTimeStats {
    #[new]
    #[pyo3(signature = (*, count, mean, p50, p99, max))]
    fn new(
        count: u64,
        mean: Option<f64>,
        p50: Option<f64>,
        p99: Option<f64>,
        max: Option<f64>,
    ) -> Self {
        PyTimeStats {
            count,
            mean,
            p50,
            p99,
            max,
        }
    }

    fn __repr__(&self) -> String {
        let seconds = |value: Option<f64>| value.map_or("None".into(), |s| format!("{s}"));
        format!(
            "TimeStats(count={}, mean={}, p50={}, p99={}, max={})",
            self.count,
            seconds(self.mean),
            seconds(self.p50),
            seconds(self.p99),
            seconds(self.max)
        )
    }
}

impl From<Summary> for PyTimeStats {
    fn from(summary: Summary) -> Self {
        let seconds = |d: Duration| (summary.count > 0).then_some(d.as_secs_f64());
        PyTimeStats {
            count: summary.count,
            mean: seconds(summary.mean),
            p50: seconds(summary.p50),
            p99: seconds(summary.p99),
            max: seconds(summary.max),
        }
    }
}

/// One worker (a thread, or a process: `pid`): the tasks it ran, the seconds it spent running
/// them (`busy`) out of those it has lived (`lifetime`), and whether it still serves.
#[pyclass(frozen, get_all, name = "WorkerStats", module = "treadle")]
pub(crate) struct PyWorkerStats {
    name: String,
    pid: Option<u32>,
    tasks: u64,
    busy: f64,
    lifetime: f64,
    alive: bool,
}

#[pymethods]
impl PyWorkerStats {
    #[new]
    #[pyo3(signature = (*, name, pid, tasks, busy, lifetime, alive))]
    fn new(
        name: String,
        pid: Option<u32>,
        tasks: u64,
        busy: f64,
        lifetime: f64,
        alive: bool,
    ) -> Self {
        PyWorkerStats {
            name,
            pid,
            tasks,
            busy,
            lifetime,
            alive,
        }
    }

    /// The share of its life it spent running tasks, from 0 to 1.
    #[getter]
    fn busy_fraction(&self) -> f64 {
        if self.lifetime > 0.0 {
            (self.busy / self.lifetime).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "WorkerStats(name={:?}, tasks={}, busy_fraction={:.3}, alive={})",
            self.name,
            self.tasks,
            self.busy_fraction(),
            if self.alive { "True" } else { "False" }
        )
    }
}

impl From<WorkerSnapshot> for PyWorkerStats {
    fn from(worker: WorkerSnapshot) -> Self {
        PyWorkerStats {
            name: worker.name,
            pid: worker.pid,
            tasks: worker.tasks,
            busy: worker.busy.as_secs_f64(),
            lifetime: worker.lifetime.as_secs_f64(),
            alive: worker.alive,
        }
    }
}

/// A process pool's workers replaced, by why: a crash, a task's time limit, a running task
/// cancelled with `interrupt=True`, `max_tasks_per_child` reached.
#[pyclass(frozen, get_all, name = "WorkerRestarts", module = "treadle")]
pub(crate) struct PyWorkerRestarts {
    crashed: u64,
    timed_out: u64,
    interrupted: u64,
    recycled: u64,
}

#[pymethods]
impl PyWorkerRestarts {
    #[new]
    #[pyo3(signature = (*, crashed=0, timed_out=0, interrupted=0, recycled=0))]
    fn new(crashed: u64, timed_out: u64, interrupted: u64, recycled: u64) -> Self {
        PyWorkerRestarts {
            crashed,
            timed_out,
            interrupted,
            recycled,
        }
    }

    /// All of them.
    #[getter]
    fn total(&self) -> u64 {
        self.crashed + self.timed_out + self.interrupted + self.recycled
    }

    fn __repr__(&self) -> String {
        format!(
            "WorkerRestarts(crashed={}, timed_out={}, interrupted={}, recycled={})",
            self.crashed, self.timed_out, self.interrupted, self.recycled
        )
    }
}

impl From<Restarts> for PyWorkerRestarts {
    fn from(restarts: Restarts) -> Self {
        PyWorkerRestarts {
            crashed: restarts.crashed,
            timed_out: restarts.timed_out,
            interrupted: restarts.interrupted,
            recycled: restarts.recycled,
        }
    }
}

/// An executor's figures at one moment (`executor.stats()`): tasks submitted, and of those
/// done (returned), failed (raised, or their worker crashed), cancelled and timed out; task
/// times and queue waits; the workers; for a process pool, its workers' restarts; seconds since
/// it was made.
#[pyclass(frozen, get_all, name = "ExecutorStats", module = "treadle")]
pub(crate) struct PyExecutorStats {
    submitted: u64,
    done: u64,
    failed: u64,
    cancelled: u64,
    timed_out: u64,
    task_time: Py<PyTimeStats>,
    queue_wait: Py<PyTimeStats>,
    workers: Py<PyTuple>,
    restarts: Option<Py<PyWorkerRestarts>>,
    uptime: f64,
}

#[pymethods]
impl PyExecutorStats {
    #[new]
    #[pyo3(signature = (
        *, submitted, done, failed, cancelled, timed_out, task_time, queue_wait, workers,
        restarts=None, uptime
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        submitted: u64,
        done: u64,
        failed: u64,
        cancelled: u64,
        timed_out: u64,
        task_time: Py<PyTimeStats>,
        queue_wait: Py<PyTimeStats>,
        workers: Vec<Py<PyWorkerStats>>,
        restarts: Option<Py<PyWorkerRestarts>>,
        uptime: f64,
        py: Python<'_>,
    ) -> PyResult<Self> {
        Ok(PyExecutorStats {
            submitted,
            done,
            failed,
            cancelled,
            timed_out,
            task_time,
            queue_wait,
            workers: PyTuple::new(py, workers)?.unbind(),
            restarts,
            uptime,
        })
    }

    /// Tasks submitted and not over yet: queued or running.
    #[getter]
    fn pending(&self) -> u64 {
        let over = self.done + self.failed + self.cancelled + self.timed_out;
        self.submitted.saturating_sub(over)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "ExecutorStats(submitted={}, done={}, failed={}, cancelled={}, timed_out={}, \
             task_time={}, queue_wait={}, workers={}, restarts={}, uptime={:.3})",
            self.submitted,
            self.done,
            self.failed,
            self.cancelled,
            self.timed_out,
            self.task_time.get().__repr__(),
            self.queue_wait.get().__repr__(),
            self.workers.bind(py).len(),
            self.restarts
                .as_ref()
                .map_or("None".into(), |r| r.get().__repr__()),
            self.uptime
        )
    }
}

/// The record of `snapshot`; a RuntimeError when the pool gathers no statistics.
pub(crate) fn to_python(
    py: Python<'_>,
    snapshot: Option<Snapshot>,
) -> PyResult<Py<PyExecutorStats>> {
    let Some(snapshot) = snapshot else {
        return Err(PyRuntimeError::new_err(
            "this pool gathers no statistics: it was made while they were off (TREADLE_STATS=0)",
        ));
    };
    let workers = snapshot
        .workers
        .into_iter()
        .map(|worker| Py::new(py, PyWorkerStats::from(worker)))
        .collect::<PyResult<Vec<_>>>()?;
    let record = PyExecutorStats::new(
        snapshot.submitted,
        snapshot.done,
        snapshot.failed,
        snapshot.cancelled,
        snapshot.timed_out,
        Py::new(py, PyTimeStats::from(snapshot.task_time))?,
        Py::new(py, PyTimeStats::from(snapshot.queue_wait))?,
        workers,
        snapshot
            .restarts
            .map(|restarts| Py::new(py, PyWorkerRestarts::from(restarts)))
            .transpose()?,
        snapshot.uptime.as_secs_f64(),
        py,
    )?;
    Py::new(py, record)
}

/// `_set_stats_enabled(enabled)`: whether pools made from now on gather statistics
/// (`TREADLE_STATS=0` turns them off; for measuring what they cost).
#[pyfunction]
pub(crate) fn _set_stats_enabled(enabled: bool) {
    stats::set_enabled(enabled);
}

/// `_stats_enabled()`: whether pools made now gather statistics.
#[pyfunction]
pub(crate) fn _stats_enabled() -> bool {
    stats::enabled()
}

/// `_Durations()`: durations summed up as the pools' own are (the core's log-linear histogram:
/// exact count, mean and maximum, percentiles within about 6%, in constant memory), for an
/// executor that gathers its figures in Python (a cluster's). `record(seconds)` from any thread;
/// `summary()` is a `TimeStats`.
#[pyclass(frozen, name = "_Durations", module = "treadle")]
pub(crate) struct PyDurations {
    histogram: Histogram,
    /// The histogram is written by one thread at a time: writers take turns.
    writing: Mutex<()>,
}

#[pymethods]
impl PyDurations {
    #[new]
    fn new() -> Self {
        PyDurations {
            histogram: Histogram::default(),
            writing: Mutex::new(()),
        }
    }

    /// Records one duration of `seconds` (a non-negative number).
    fn record(&self, seconds: f64) -> PyResult<()> {
        let duration = Duration::try_from_secs_f64(seconds).map_err(|_| {
            PyValueError::new_err(format!(
                "a duration is a non-negative number of seconds, not {seconds}"
            ))
        })?;
        let _turn = self.writing.lock();
        self.histogram.record(duration, 1);
        Ok(())
    }

    /// The durations recorded so far, summed up.
    fn summary(&self) -> PyTimeStats {
        PyTimeStats::from(Histogram::summarize([&self.histogram]))
    }
}
