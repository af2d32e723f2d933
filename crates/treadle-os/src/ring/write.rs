//! Putting records: copy in under the write lock, then publish with one release store.

use super::layout::{pack, pad8, unpack, Ring, BLOCK, BLOCK_HEADER, MAX_RECORD, RECORD_HEADER};
use crate::robust::Locked;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Why a put did not happen.
#[derive(Debug)]
pub enum PutError {
    /// The ring had no room (a bounded ring held `maxsize` records, or every block of the
    /// reservation was in use) until the deadline.
    Full,
    /// Another writer held the write lock (and the caller would not wait for it).
    Busy,
    /// The record can never fit: larger than the whole reservation, or than [`MAX_RECORD`].
    TooLarge,
    /// The operating system refused (growing the region, the write lock).
    Os(io::Error),
}

/// One record to put: its kind and the parts its payload is made of, concatenated.
pub type Record<'a> = (u32, &'a [&'a [u8]]);

impl Ring {
    /// Puts one record of `kind` made of `parts` (concatenated), waiting for room until
    /// `deadline` (`Some(now)`: not at all).
    ///
    /// With `task`, the record also counts as an unfinished task (a JoinableQueue's put), in the
    /// same step as it is published.
    pub fn put(
        &self,
        kind: u32,
        parts: &[&[u8]],
        task: bool,
        deadline: Option<Instant>,
    ) -> Result<(), PutError> {
        self.put_many(&[(kind, parts)], task, deadline)
            .map(|_| ())
            .map_err(|(_, error)| error)
    }

    /// Puts `records` in order, as many at a time as there is room for (one lock and one wake-up
    /// for all of them when they fit), waiting for room until `deadline`. On failure, says how
    /// many were put before it.
    pub fn put_many(
        &self,
        records: &[Record<'_>],
        task: bool,
        deadline: Option<Instant>,
    ) -> Result<usize, (usize, PutError)> {
        let mut done = 0;
        while done < records.len() {
            // Room appears when a reader takes a record: what they had taken before this try.
            let taken = self.taken();
            match self.try_put_many(&records[done..], task, true) {
                Ok(put) => done += put,
                Err((put, PutError::Full)) => {
                    done += put;
                    if !self.wait_for_room(taken, deadline) {
                        return Err((done, PutError::Full));
                    }
                }
                Err((put, error)) => return Err((done + put, error)),
            }
        }
        Ok(done)
    }

    /// Puts as many of `records`, in order, as there is room for now, under one hold of the
    /// write lock, and wakes readers once; never waits for room. The lock (held only while a
    /// record is copied in) is waited for if `wait_for_lock`, else `Busy` when it is held.
    pub fn try_put_many(
        &self,
        records: &[Record<'_>],
        task: bool,
        wait_for_lock: bool,
    ) -> Result<usize, (usize, PutError)> {
        let header = self.header();
        for (_, parts) in records {
            let len: usize = parts.iter().map(|part| part.len()).sum();
            if len > MAX_RECORD || Self::blocks_for(len) > header.max_blocks as usize {
                return Err((0, PutError::TooLarge));
            }
        }
        let locked = if wait_for_lock {
            header.write_lock.lock(None)
        } else {
            header.write_lock.try_lock()
        };
        let locked = match locked {
            Ok(Some(locked)) => locked,
            Ok(None) => return Err((0, PutError::Busy)),
            Err(error) => return Err((0, PutError::Os(error))),
        };
        if locked == Locked::OwnerDied {
            // Nothing to repair: a dead writer published nothing past `published`, and the
            // writes below reuse what it linked there.
            header.writers_recovered.fetch_add(1, Ordering::AcqRel);
            header.write_lock.mark_consistent();
        }
        let outcome = self.put_locked(records, task);
        header.write_lock.unlock();
        let put = match &outcome {
            Ok(put) | Err((put, _)) => *put,
        };
        if put > 0 {
            self.wake_readers();
            self.after_publish();
        }
        outcome
    }

    /// Records readers have taken, ever: where [`Ring::wait_for_room`] starts from.
    pub fn taken(&self) -> u64 {
        self.header().got_count.load(Ordering::Acquire)
    }

    /// Blocks a record of `len` bytes may span.
    fn blocks_for(len: usize) -> usize {
        (RECORD_HEADER + pad8(len)).div_ceil(BLOCK - BLOCK_HEADER) + 1
    }

    /// With the write lock held: writes the records that fit and publishes them (all at once).
    /// Returns how many, and why it stopped short.
    fn put_locked(&self, records: &[Record<'_>], task: bool) -> Result<usize, (usize, PutError)> {
        let header = self.header();
        let mut room = match header.maxsize {
            0 => u64::MAX,
            maxsize => maxsize.saturating_sub(self.len()),
        };
        let mut end = header.published.load(Ordering::Relaxed);
        let mut written = 0;
        let mut stopped = None;
        for (kind, parts) in records {
            if room == 0 {
                stopped = Some(PutError::Full);
                break;
            }
            match self.write_record(end, *kind, parts) {
                Ok(after) => end = after,
                Err(error) => {
                    stopped = Some(error);
                    break;
                }
            }
            room -= 1;
            written += 1;
        }
        if written > 0 {
            if task {
                header
                    .unfinished
                    .fetch_add(written as u64, Ordering::AcqRel);
            }
            header.published.store(end, Ordering::Release);
            header
                .put_count
                .fetch_add(written as u64, Ordering::Release);
        }
        match stopped {
            None => Ok(written),
            Some(error) => Err((written, error)),
        }
    }

    /// Copies one record in at `at` (past the published end, which only the holder of the write
    /// lock writes); returns the position after it.
    fn write_record(&self, at: u64, kind: u32, parts: &[&[u8]]) -> Result<u64, PutError> {
        let len: usize = parts.iter().map(|part| part.len()).sum();
        let (mut block, offset) = unpack(at);
        let mut offset = offset as usize;
        if offset + RECORD_HEADER > BLOCK {
            block = self.next_block(block)?;
            offset = BLOCK_HEADER;
        }
        // The header is never split: records are 8-aligned and a block's size is a multiple.
        let mut record_header = [0u8; RECORD_HEADER];
        record_header[..4].copy_from_slice(&(len as u32).to_le_bytes());
        record_header[4..].copy_from_slice(&kind.to_le_bytes());
        // SAFETY: [offset, offset + 8) lies inside `block`, which this writer owns past the
        // published end (it holds the write lock), and readers read nothing past that end.
        unsafe {
            std::ptr::copy_nonoverlapping(
                record_header.as_ptr(),
                self.block_ptr(block).add(offset),
                RECORD_HEADER,
            );
        }
        offset += RECORD_HEADER;
        for part in parts {
            let mut part: &[u8] = part;
            while !part.is_empty() {
                if offset == BLOCK {
                    block = self.next_block(block)?;
                    offset = BLOCK_HEADER;
                }
                let n = part.len().min(BLOCK - offset);
                // SAFETY: as for the header: inside `block`, past the published end.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        part.as_ptr(),
                        self.block_ptr(block).add(offset),
                        n,
                    );
                }
                offset += n;
                part = &part[n..];
            }
        }
        Ok(pack(block, pad8(offset).min(BLOCK) as u32))
    }
}
