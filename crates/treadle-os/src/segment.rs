//! A frame's large buffers in shared memory: all of them packed into one anonymous segment (a
//! `memfd`, passed by descriptor, with no name any other process could open), so that a frame
//! carries at most one descriptor whatever the number of buffers (Linux passes at most 253 in one
//! `sendmsg`).
//!
//! The layout, little-endian, is a table then the buffers:
//!
//! ```text
//! count: u64 | (offset: u64, length: u64) * count | ... each buffer at its offset ...
//! ```
//!
//! Each offset is a multiple of [`ALIGN`] (a page), so that the receiver's mapping gives every
//! buffer the alignment an array needs. The Python side (`treadle/multiprocessing/segments.py`)
//! writes and reads the same layout, and `tests/test_wire.py` holds it to these constants.

use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
use std::io;
use std::os::fd::OwnedFd;

/// Every buffer starts at a multiple of this many bytes from the segment's start.
pub const ALIGN: u64 = 4096;
/// The table's count as Python's `struct` module spells it.
pub const COUNT_FORMAT: &str = "<Q";
/// One table entry (offset, length) as Python's `struct` module spells it.
pub const ENTRY_FORMAT: &str = "<QQ";

/// The offset of each buffer of the given lengths, and the segment's whole size.
pub fn layout(lengths: &[usize]) -> (Vec<u64>, u64) {
    let table = 8 + 16 * lengths.len() as u64;
    let mut at = table.next_multiple_of(ALIGN);
    let mut offsets = Vec::with_capacity(lengths.len());
    for &length in lengths {
        offsets.push(at);
        at = (at + length as u64).next_multiple_of(ALIGN);
    }
    (offsets, at)
}

/// One segment holding `buffers` (see the module documentation).
pub fn pack(buffers: &[&[u8]]) -> io::Result<OwnedFd> {
    let lengths: Vec<usize> = buffers.iter().map(|b| b.len()).collect();
    let (offsets, size) = layout(&lengths);
    let fd = memfd_create("treadle-buffers", MemfdFlags::CLOEXEC)?;
    ftruncate(&fd, size)?;
    let mut table = Vec::with_capacity(8 + 16 * buffers.len());
    table.extend_from_slice(&(buffers.len() as u64).to_le_bytes());
    for (&offset, &length) in offsets.iter().zip(&lengths) {
        table.extend_from_slice(&offset.to_le_bytes());
        table.extend_from_slice(&(length as u64).to_le_bytes());
    }
    write_all_at(&fd, &table, 0)?;
    for (buffer, &offset) in buffers.iter().zip(&offsets) {
        write_all_at(&fd, buffer, offset)?;
    }
    Ok(fd)
}

fn write_all_at(fd: &OwnedFd, mut bytes: &[u8], mut offset: u64) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::pwrite(fd, bytes, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                bytes = &bytes[n..];
                offset += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_at(fd: &OwnedFd, offset: u64, length: usize) -> Vec<u8> {
        let mut out = vec![0; length];
        let mut got = 0;
        while got < length {
            got += rustix::io::pread(fd, &mut out[got..], offset + got as u64).unwrap();
        }
        out
    }

    fn u64_at(fd: &OwnedFd, offset: u64) -> u64 {
        u64::from_le_bytes(read_at(fd, offset, 8).try_into().unwrap())
    }

    #[test]
    fn buffers_sit_at_aligned_offsets_the_table_names() {
        let buffers: Vec<Vec<u8>> = (0..300u32)
            .map(|i| vec![i as u8; 5000 + i as usize])
            .collect();
        let slices: Vec<&[u8]> = buffers.iter().map(Vec::as_slice).collect();
        let fd = pack(&slices).unwrap();
        assert_eq!(u64_at(&fd, 0), 300);
        for (i, buffer) in buffers.iter().enumerate() {
            let offset = u64_at(&fd, 8 + 16 * i as u64);
            let length = u64_at(&fd, 16 + 16 * i as u64);
            assert_eq!(offset % ALIGN, 0);
            assert_eq!(length as usize, buffer.len());
            assert_eq!(&read_at(&fd, offset, buffer.len()), buffer);
        }
    }

    #[test]
    fn an_empty_buffer_takes_no_room() {
        let (offsets, size) = layout(&[0, 10]);
        assert_eq!(offsets, vec![ALIGN, ALIGN]);
        assert_eq!(size, 2 * ALIGN);
    }
}
