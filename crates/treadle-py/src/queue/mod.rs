//! `treadle.Queue`, `treadle.LifoQueue`, `treadle.PriorityQueue` and `treadle.SimpleQueue`.
//!
//! A FIFO or LIFO queue whose class does not override a storage step runs entirely in the core's
//! [`Queue`]: a put or a get is one call into Rust that takes the core mutex once, and a blocked
//! thread parks in Rust with the interpreter released.
//!
//! `PriorityQueue` orders items with their own `<`, which is Python code, and a subclass that
//! overrides `_put`, `_get`, `_qsize` or `_init` asks for its own Python code to run as the
//! storage steps. Neither may run under a core mutex, so such queues run as a [`Monitor`], the
//! design of `queue.Queue` itself on treadle's lock and conditions: the storage steps run with
//! the queue's lock held (a lock waited for with the interpreter released), and a step that raises
//! propagates to the caller with the queue as it was. A plain queue becomes a monitor, for good,
//! when the program uses its `mutex` or a condition, or sets a storage step on the instance: the
//! core queue is diverted and the calls in flight in it move over (`py_queue.rs`).
//!
//! What is not there: the attribute `queue` of `queue.Queue` (its items live in Rust);
//! `docs/queues.md` says how to port code that uses it.
//!
//! One job per file: the classes (`py_queue.rs`, `subclasses.rs`, `simple.rs`), the core-queue
//! operations they share (`items.rs`) and how they wait (`wait.rs`), the monitor mode
//! (`monitor.rs`, `monitored.rs`, `storage.rs`, `heap.rs`), the direct `put`/`get` entry points
//! (`fast.rs`), the exceptions (`errors.rs`) and `Queue[int]` (`alias.rs`).

mod alias;
mod errors;
mod fast;
mod heap;
mod items;
mod monitor;
mod monitored;
mod py_queue;
mod simple;
mod storage;
mod subclasses;
mod wait;

pub(crate) use errors::shut_down_class;
pub(crate) use fast::install as install_fast_methods;
pub(crate) use py_queue::PyQueue;
pub(crate) use simple::PySimpleQueue;
pub(crate) use subclasses::{PyLifoQueue, PyPriorityQueue};
