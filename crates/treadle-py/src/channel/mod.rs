//! `treadle._treadle._Ring` and `_Channel`: the native half of `treadle.multiprocessing`'s
//! queues and pipes, over `treadle_os::ring` (a record ring in shared memory).
//!
//! A [`PyRing`] is the shared memory itself, made in one process and opened from its two
//! descriptors in others; it has no role. A [`PyChannel`] is a *handle*: a ring it reads from
//! and a ring it writes to (the same one for a queue, two for a duplex pipe's end, one for a
//! one-way pipe's end), counted in each ring's table of holders for as long as it is open, so
//! that a reader can tell when nobody is left to write. The Python classes (`Queue`,
//! `JoinableQueue`, `SimpleQueue`, `Connection`) derive from `_Channel`, so that `put`, `get`,
//! `send` and `recv` are its methods, called with no Python frame in between.
//!
//! One job per file: the ring (`ring.rs`), the handle and its methods (`handle.rs`), how an
//! object becomes a record and back (`codec.rs`: fast encodings for the common small messages,
//! pickle protocol 5 with out-of-band buffers otherwise), how a call waits (`wait.rs`: in slices
//! through the runtime's `block_on`, and when nobody can write), and the exceptions
//! (`errors.rs`).
//!
//! The rule that keeps the interpreter out of deadlocks holds here too: no Python code runs and
//! no Python object is made while a ring's lock is held (an object is encoded before the write
//! lock is taken, and a record is copied out into memory allocated before the read lock is
//! taken), so the holder of a ring's lock never needs the interpreter to let it go.

mod codec;
mod errors;
mod handle;
mod ring;
mod wait;

pub(crate) use codec::_set_channel_pickler;
pub(crate) use errors::AbandonedQueueError;
pub(crate) use handle::PyChannel;
pub(crate) use ring::PyRing;
