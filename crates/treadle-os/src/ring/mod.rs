//! A message channel in shared memory: any number of processes and threads put byte records,
//! any number take them, first in first out, with no thread in between.
//!
//! # Layout (`layout.rs`)
//!
//! One [`Region`](crate::shm::Region): a header page, then blocks of [`BLOCK`] bytes. Records
//! (an 8-byte header: payload length and kind, then the payload, padded to 8 bytes) are written
//! one after another into a chain of blocks; a record may span blocks. The writers' end and the
//! readers' end are each one 64-bit position (block, offset).
//!
//! # Why a record is whole or absent (`write.rs`, `read.rs`)
//!
//! Writers take the write lock (a robust mutex, see [`crate::robust`]), copy the record in,
//! linking new blocks as they need them, and only then *publish* it: one release store of the
//! new end position. Readers see nothing past the published end. A writer that dies mid-copy
//! has published nothing; the kernel marks the lock *owner died*, and the next writer goes on
//! from the published end, reusing the blocks the dead writer had linked past it. Readers take
//! the read lock, copy a record out, then store their new position; a reader that dies before
//! that store leaves the record to the next reader.
//!
//! # Memory (`blocks.rs`)
//!
//! Blocks a reader leaves go on a free stack that writers take from first (the most recently
//! used block is the warmest in cache); only when it is empty does the region grow, up to its
//! reservation, so an unbounded ring's writer waits for room only once the reservation is in
//! use. The free stack has one pusher (the holder of the read lock) and one popper (the holder
//! of the write lock) at a time, so a plain compare-and-swap stack has no ABA hazard; the tag is
//! belt and braces. The file never shrinks: a ring keeps the memory of its fullest moment until
//! the last process lets go of it.
//!
//! # Waking (`wait.rs`, `readiness.rs`)
//!
//! A waiting reader counts itself in `readers_waiting`, re-checks, and sleeps on the shared
//! futex `data_seq`; a writer that published bumps and wakes it only when someone is counted
//! (a full fence between the publication and the look at the count, and between the count and
//! the re-check, so that one of the two sides sees the other). Writers waiting for room do the
//! same with `space_seq`, JoinableQueue's `join` with `unfinished_seq`. Every wait spins briefly
//! first: in a hand-off between two processes the other side is usually that close. An
//! `eventfd`, readable while a record waits or once every writer let go, serves `poll()` and
//! `select()`; it is kept up to date only once someone asked for it.
//!
//! # Who can still write (`crate::holders`)
//!
//! The header holds the table of the processes that hold the ring for reading and for writing,
//! so that a reader can tell that nobody is left to write to it.

mod blocks;
mod layout;
mod read;
mod readiness;
mod tasks;
mod wait;
mod write;

#[cfg(test)]
mod tests;

pub use layout::{Ring, Writers, BLOCK, MAX_RECORD};
pub use write::{PutError, Record};
