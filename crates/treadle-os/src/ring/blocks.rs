//! The blocks records live in: the free stack, and the next block a writer writes into.

use super::layout::{Ring, BLOCK, HEADER_PAGE};
use super::write::PutError;
use std::sync::atomic::Ordering;

impl Ring {
    /// The block after `block` for a writer (who holds the write lock): one a dead writer linked
    /// already, else one from the free stack, else a new one. `Full` when there is none to be
    /// had now.
    pub(super) fn next_block(&self, block: u32) -> Result<u32, PutError> {
        let linked = self.block_header(block).next.load(Ordering::Acquire);
        if linked != 0 {
            // Past the published end, only a writer that died links: the block is ours.
            return Ok(linked - 1);
        }
        let fresh = match self.pop_free() {
            Some(fresh) => fresh,
            None => self.new_block()?,
        };
        self.block_header(fresh).next.store(0, Ordering::Relaxed);
        self.block_header(block)
            .next
            .store(fresh + 1, Ordering::Release);
        Ok(fresh)
    }

    fn new_block(&self) -> Result<u32, PutError> {
        let header = self.header();
        let block = header.high_water.load(Ordering::Relaxed);
        if block >= header.max_blocks {
            return Err(PutError::Full);
        }
        let end = HEADER_PAGE + (block as usize + 1) * BLOCK;
        if self.region.len().map_err(PutError::Os)? < end {
            // Grow by a quarter of what there is (at least 4 blocks), within the reservation.
            let grown = (end + (end / 4).max(4 * BLOCK)).min(self.region.reserved());
            self.region.grow_to(grown).map_err(PutError::Os)?;
        }
        header.high_water.store(block + 1, Ordering::Release);
        Ok(block)
    }

    fn pop_free(&self) -> Option<u32> {
        let free = &self.header().free;
        let mut head = free.load(Ordering::Acquire);
        loop {
            let index = head as u32;
            if index == 0 {
                return None;
            }
            let next = self.block_header(index - 1).next.load(Ordering::Acquire);
            let tag = (head >> 32).wrapping_add(1);
            match free.compare_exchange_weak(
                head,
                (tag << 32) | u64::from(next),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(index - 1),
                Err(now) => head = now,
            }
        }
    }

    /// Gives a block a reader is done with back to writers.
    pub(super) fn push_free(&self, block: u32) {
        let free = &self.header().free;
        let mut head = free.load(Ordering::Acquire);
        loop {
            self.block_header(block)
                .next
                .store(head as u32, Ordering::Relaxed);
            let tag = (head >> 32).wrapping_add(1);
            match free.compare_exchange_weak(
                head,
                (tag << 32) | u64::from(block + 1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }
}
