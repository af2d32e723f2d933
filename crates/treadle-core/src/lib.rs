//! treadle's portable core, in pure Rust: the state machines behind treadle's threads-side
//! Python API.
//!
//! - The synchronization primitives behind `treadle.Lock`, `RLock`, `Condition`, `Semaphore`,
//!   `BoundedSemaphore`, `Event` and `Barrier` ([`lock`], [`rlock`], [`wait_queue`], [`event`],
//!   [`semaphore`], [`barrier`]).
//! - The lock-free integer behind `treadle.AtomicInt`, and lock-free operations on an integer in
//!   memory the caller provides ([`atomic`]).
//! - The queue behind `Queue`, `LifoQueue`, `PriorityQueue` and `SimpleQueue` ([`queue`]).
//! - The thread-pool engine and the future's state ([`pool`], [`future`]).
//! - The wait graph that deadlock detection walks ([`wait_graph`], [`thread_id`]).
//!
//! Nothing here knows about Python, nor about one operating system: the process supervisor and
//! the `/proc` readers are in `treadle-os`. Every blocking operation takes an optional deadline
//! and returns when it succeeds or the deadline passes, leaving its state consistent, so that the
//! binding layer can wait in slices (to run Python's signal handlers between them) and restart
//! the wait. Safety never relies on a global interpreter lock: every type is `Send + Sync` and
//! correct under free-threaded Python.
//!
//! Blocking is built on `std::sync::{Mutex, Condvar}` and atomics only, reached through the
//! [`primitive`] module, which swaps them for loom's models under `cfg(loom)` so that the lock,
//! the condition queue, the event, the queue, the future cell and the pool are model-checked
//! (`tests/loom.rs`).

pub mod atomic;
pub mod barrier;
pub mod event;
pub mod future;
pub mod lock;
pub mod pool;
pub mod primitive;
pub mod queue;
pub mod rlock;
pub mod semaphore;
pub mod stats;
pub mod thread_id;
pub mod wait_graph;
pub mod wait_queue;

pub use atomic::{AtomicInt, Overflow};
pub use barrier::{Arrival, Barrier, BarrierError};
pub use event::Event;
pub use future::{Completed, Completions, FutureCell, Outcome, Start, Status, TaskTypes};
pub use lock::RawLock;
pub use pool::{Next, Pool, SubmitError};
pub use queue::{Diverted, GetError, Handover, Order, PutError, Queue, QueueWait, TaskDoneError};
pub use rlock::RawRLock;
pub use semaphore::{Semaphore, SemaphoreError, Units};
pub use thread_id::ThreadId;
pub use wait_graph::{Edge, Mode, WaitGraph, WaitKind, WaitTarget};
pub use wait_queue::{WaitQueue, Waiter};

/// Errors shared by the lock types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockError {
    /// `release()` of a lock that is not locked.
    NotLocked,
    /// `release()` of an `RLock` by a thread that does not own it.
    NotOwner,
    /// An `RLock`'s recursion count would overflow.
    RecursionOverflow,
}
