//! The bindings' runtime: the leaf layer every other module of the bindings stands on, and
//! which imports nothing above it (a test, `tests/test_layers.py`, holds the crate to that).
//!
//! - [`wait`]: where every blocking wait blocks (`block_on` and friends): detached from the
//!   interpreter, in slices so that Ctrl-C works, cancellable, and in the wait graph.
//! - [`timeout`]: timeouts as `threading` and `queue` read them.
//! - [`errors`]: the exceptions the standard library raises in the same situations.
//! - [`cancel`]: the task a thread runs now, its cancel token, `treadle.Cancelled`.
//! - [`threads`] and [`tracking`]: which Python thread is which, and a wait's place in the wait
//!   graph, with verdicts handed to the reporter the package registered.
//! - [`hooks`]: the registry of the Python callables the package hands down (the deadlock
//!   reporter, the lock-order hook, the pool's hooks), typed slots read by the layers below it.

pub(crate) mod cancel;
pub(crate) mod errors;
pub(crate) mod hooks;
pub(crate) mod threads;
pub(crate) mod timeout;
pub(crate) mod tracking;
pub(crate) mod wait;
