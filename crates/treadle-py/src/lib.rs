//! `treadle._treadle`: the Python bindings of `treadle-core` (primitives, queues, the thread
//! pool, futures, the wait graph) and `treadle-os` (the process supervisor).
//!
//! Thin wrappers only: argument parsing with `threading`'s rules and messages, exception mapping,
//! and releasing the interpreter around every blocking wait. The semantics live in the crates
//! below. The modules are layered: [`runtime`] (waiting, timeouts, errors, the cancel token, the
//! thread registry, wait tracking, the hook registry) imports nothing above it; the classes
//! stand on it; `tests/test_layers.py` checks that no import closes a cycle.

use pyo3::prelude::*;

mod atomic;
mod atomic_int;
mod barrier;
mod cancellation;
mod channel;
mod child_process;
mod completions;
mod condition;
mod deadlock;
mod event;
mod fast_method;
mod future;
mod lock;
mod pool;
mod process_pool;
mod queue;
mod runtime;
mod semaphore;
mod shared_lock;
mod shared_value;
mod stats;
mod unretrieved;

/// The native module behind the `treadle` package.
#[pymodule(gil_used = false)]
fn _treadle(m: &Bound<'_, PyModule>) -> PyResult<()> {
    runtime::timeout::init(m.py())?;
    m.add_class::<atomic_int::PyAtomicInt>()?;
    m.add_class::<lock::PyLock>()?;
    m.add_class::<lock::PyRLock>()?;
    m.add_class::<condition::PyCondition>()?;
    m.add_class::<semaphore::PySemaphore>()?;
    m.add_class::<semaphore::PyBoundedSemaphore>()?;
    m.add_class::<event::PyEvent>()?;
    m.add_class::<barrier::PyBarrier>()?;
    m.add_class::<deadlock::thread_done::PyThreadDone>()?;
    m.add_function(wrap_pyfunction!(deadlock::set_mode, m)?)?;
    m.add_function(wrap_pyfunction!(deadlock::get_mode, m)?)?;
    m.add_function(wrap_pyfunction!(deadlock::_set_reporter, m)?)?;
    m.add_function(wrap_pyfunction!(deadlock::_waits, m)?)?;
    m.add_function(wrap_pyfunction!(
        deadlock::lock_order::_set_lock_order_hook,
        m
    )?)?;
    m.add_function(wrap_pyfunction!(deadlock::_thread_starting, m)?)?;
    m.add_function(wrap_pyfunction!(deadlock::_current_thread_number, m)?)?;
    runtime::threads::register_current_thread();
    m.add_class::<queue::PyQueue>()?;
    m.add_class::<queue::PyLifoQueue>()?;
    m.add_class::<queue::PyPriorityQueue>()?;
    m.add_class::<queue::PySimpleQueue>()?;
    queue::install_fast_methods(m.py())?;
    m.add("ShutDown", queue::shut_down_class(m.py())?)?;
    m.add_class::<future::PyFuture>()?;
    m.add_class::<pool::PyThreadPool>()?;
    m.add_class::<pool::PyPoolHandle>()?;
    m.add_class::<completions::PyCompletions>()?;
    m.add_class::<unretrieved::PyUnretrieved>()?;
    m.add_function(wrap_pyfunction!(future::_set_pool_hooks, m)?)?;
    m.add_function(wrap_pyfunction!(pool::_run_worker, m)?)?;
    m.add_function(wrap_pyfunction!(pool::_run_timer, m)?)?;
    m.add_function(wrap_pyfunction!(pool::_locals_in_use, m)?)?;
    m.add_function(wrap_pyfunction!(pool::_interpreter_exiting, m)?)?;
    m.add_function(wrap_pyfunction!(cancellation::sleep, m)?)?;
    m.add_function(wrap_pyfunction!(cancellation::check_cancelled, m)?)?;
    m.add_function(wrap_pyfunction!(cancellation::cancelled, m)?)?;
    m.add_class::<cancellation::PyInterruptible>()?;
    m.add("Cancelled", m.py().get_type::<runtime::cancel::Cancelled>())?;
    m.add(
        "TaskTimeoutError",
        m.py().get_type::<runtime::cancel::TaskTimeoutError>(),
    )?;
    m.add_class::<process_pool::PySupervisor>()?;
    m.add_class::<process_pool::PyForkServer>()?;
    m.add_function(wrap_pyfunction!(process_pool::_die_with_parent, m)?)?;
    m.add_class::<process_pool::events::PyAnswer>()?;
    m.add_class::<process_pool::events::PyReturned>()?;
    m.add_class::<process_pool::events::PyRaised>()?;
    m.add_class::<process_pool::events::PyWorkerEnded>()?;
    m.add_class::<process_pool::events::PyCrashed>()?;
    m.add_class::<process_pool::events::PyTerminated>()?;
    m.add_class::<process_pool::events::PyTimedOut>()?;
    m.add_class::<process_pool::events::PyFailed>()?;
    m.add_class::<process_pool::events::PyBroken>()?;
    m.add_class::<process_pool::events::PyClosed>()?;
    m.add_class::<process_pool::events::PyCancelOutcome>()?;
    m.add_function(wrap_pyfunction!(process_pool::wire::_wire, m)?)?;
    m.add_class::<channel::PyRing>()?;
    m.add_class::<channel::PyChannel>()?;
    m.add_function(wrap_pyfunction!(channel::_set_channel_pickler, m)?)?;
    m.add_function(wrap_pyfunction!(child_process::_wait_for_exit, m)?)?;
    m.add(
        "AbandonedQueueError",
        m.py().get_type::<channel::AbandonedQueueError>(),
    )?;
    m.add_class::<shared_lock::PySharedLock>()?;
    shared_lock::fast::install(m.py())?;
    m.add_class::<shared_value::PySharedValue>()?;
    m.add(
        "OwnerDiedError",
        m.py().get_type::<shared_lock::OwnerDiedError>(),
    )?;
    m.add_class::<atomic::PyAtomicCell>()?;
    atomic::fast::install(m.py())?;
    m.add_class::<stats::PyExecutorStats>()?;
    m.add_class::<stats::PyTimeStats>()?;
    m.add_class::<stats::PyWorkerStats>()?;
    m.add_class::<stats::PyWorkerRestarts>()?;
    m.add_class::<stats::PyDurations>()?;
    m.add_function(wrap_pyfunction!(stats::_set_stats_enabled, m)?)?;
    m.add_function(wrap_pyfunction!(stats::_stats_enabled, m)?)?;
    m.add("TIMEOUT_MAX", runtime::timeout::timeout_max())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
