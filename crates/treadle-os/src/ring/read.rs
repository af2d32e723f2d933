//! Taking records: under the read lock, hand the record's pieces to the caller to copy out, then
//! move the readers' position past it and free the blocks left behind.

use super::layout::{pack, pad8, unpack, Ring, BLOCK, BLOCK_HEADER, RECORD_HEADER};
use crate::robust::Locked;
use std::io;
use std::sync::atomic::Ordering;

/// Pieces a record is handed over in without allocating (a record of up to 7 blocks).
const INLINE_PIECES: usize = 8;

impl Ring {
    /// Takes the oldest record if there is one: `read(kind, pieces)` gets its payload as the
    /// pieces it spans (copy them out: they are reused once it returns) and `take` returns what
    /// `read` returned. `Ok(None)` when the ring is empty, or when another reader holds the
    /// read lock (held only while a record is copied out) and not `wait_for_lock`.
    pub fn take<R>(
        &self,
        wait_for_lock: bool,
        read: impl FnOnce(u32, &[&[u8]]) -> R,
    ) -> io::Result<Option<R>> {
        let mut read = Some(read);
        let mut out = None;
        self.take_many(1, wait_for_lock, |kind, pieces| {
            if let Some(read) = read.take() {
                out = Some(read(kind, pieces));
            }
        })?;
        Ok(out)
    }

    /// Takes up to `max` records, oldest first, under one hold of the read lock, handing each to
    /// `read` as [`Ring::take`] does; returns how many it took (0 when the ring is empty, or
    /// the read lock is held and not `wait_for_lock`).
    pub fn take_many(
        &self,
        max: usize,
        wait_for_lock: bool,
        mut read: impl FnMut(u32, &[&[u8]]),
    ) -> io::Result<usize> {
        let header = self.header();
        if max == 0 || self.is_empty() {
            return Ok(0);
        }
        let locked = if wait_for_lock {
            header.read_lock.lock(None)?
        } else {
            header.read_lock.try_lock()?
        };
        let Some(locked) = locked else {
            return Ok(0);
        };
        if locked == Locked::OwnerDied {
            // A reader that died before it moved the position left its record to us.
            header.read_lock.mark_consistent();
        }
        let mut taken = 0;
        while taken < max && self.take_locked(&mut read) {
            taken += 1;
        }
        header.read_lock.unlock();
        if taken > 0 {
            self.wake_writers();
            self.after_take();
        }
        Ok(taken)
    }

    /// The length and kind of the oldest record, if any (it may be gone by the time the caller
    /// takes one, if other readers are about).
    pub fn peek(&self) -> Option<(usize, u32)> {
        let header = self.header();
        let start = header.read_pos.load(Ordering::Acquire);
        if start == header.published.load(Ordering::Acquire) {
            return None;
        }
        let (mut block, mut offset) = unpack(start);
        if offset as usize + RECORD_HEADER > BLOCK {
            block = self
                .block_header(block)
                .next
                .load(Ordering::Acquire)
                .checked_sub(1)?;
            offset = BLOCK_HEADER as u32;
        }
        Some(self.record_header(block, offset as usize))
    }

    fn record_header(&self, block: u32, offset: usize) -> (usize, u32) {
        let mut raw = [0u8; RECORD_HEADER];
        // SAFETY: a published record's header lies inside its block; it was written before the
        // release store of `published` the caller acquired, and no writer touches it until the
        // readers' position has moved past it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.block_ptr(block).add(offset),
                raw.as_mut_ptr(),
                RECORD_HEADER,
            );
        }
        let [l0, l1, l2, l3, k0, k1, k2, k3] = raw;
        (
            u32::from_le_bytes([l0, l1, l2, l3]) as usize,
            u32::from_le_bytes([k0, k1, k2, k3]),
        )
    }

    /// With the read lock held: hands the oldest record to `read` and moves past it; false when
    /// there is none.
    fn take_locked(&self, read: &mut impl FnMut(u32, &[&[u8]])) -> bool {
        let header = self.header();
        let start = header.read_pos.load(Ordering::Relaxed);
        let published = header.published.load(Ordering::Acquire);
        if start == published {
            return false;
        }
        let (mut block, offset) = unpack(start);
        let mut offset = offset as usize;
        // Blocks this read finishes with, freed once the position has moved past them.
        let mut finished: Vec<u32> = Vec::new();
        if offset + RECORD_HEADER > BLOCK {
            finished.push(block);
            block = self.block_header(block).next.load(Ordering::Acquire) - 1;
            offset = BLOCK_HEADER;
        }
        let (len, kind) = self.record_header(block, offset);
        offset += RECORD_HEADER;
        let mut inline: [&[u8]; INLINE_PIECES] = [&[]; INLINE_PIECES];
        let mut spilled: Vec<&[u8]> = Vec::new();
        let mut count = 0usize;
        let mut remaining = len;
        while remaining > 0 {
            if offset == BLOCK {
                finished.push(block);
                block = self.block_header(block).next.load(Ordering::Acquire) - 1;
                offset = BLOCK_HEADER;
            }
            let n = remaining.min(BLOCK - offset);
            // SAFETY: as in record_header: the piece lies inside `block`, is published, and
            // stays put while the read lock is held and the position has not moved past it.
            let piece = unsafe { std::slice::from_raw_parts(self.block_ptr(block).add(offset), n) };
            if count < INLINE_PIECES {
                inline[count] = piece;
            } else {
                if spilled.is_empty() {
                    spilled.extend_from_slice(&inline);
                }
                spilled.push(piece);
            }
            count += 1;
            offset += n;
            remaining -= n;
        }
        if spilled.is_empty() {
            read(kind, &inline[..count]);
        } else {
            read(kind, &spilled);
        }
        let end = pack(block, pad8(offset).min(BLOCK) as u32);
        header.read_pos.store(end, Ordering::Release);
        header.got_count.fetch_add(1, Ordering::Release);
        for done in finished {
            self.push_free(done);
        }
        true
    }
}
