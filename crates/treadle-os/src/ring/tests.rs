//! The ring within one process (threads stand in for processes where a thread's death is what
//! matters: a robust mutex is marked when its owning *thread* dies). Tests with real processes,
//! which fork, are in `tests/ring_processes.rs`, a binary with no test harness threads.

use super::layout::{unpack, BLOCK};
use super::*;
use crate::holders::Role;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn take_vec(ring: &Ring, deadline: Option<Instant>) -> Option<(u32, Vec<u8>)> {
    loop {
        if let Some(record) = ring
            .take(true, |kind, pieces| (kind, pieces.concat()))
            .unwrap()
        {
            return Some(record);
        }
        if !ring.wait_for_data(deadline) {
            return None;
        }
    }
}

fn soon() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(5))
}

fn now() -> Option<Instant> {
    Some(Instant::now())
}

#[test]
fn a_record_is_the_concatenation_of_its_parts() {
    let ring = Ring::create(1 << 24, 0).unwrap();
    let big = vec![3u8; BLOCK + 17];
    ring.put(4, &[b"head", &big, b"", b"tail"], false, None)
        .unwrap();
    let (kind, data) = take_vec(&ring, now()).unwrap();
    assert_eq!(kind, 4);
    assert_eq!(&data[..4], b"head");
    assert_eq!(&data[4..4 + big.len()], &big[..]);
    assert_eq!(&data[4 + big.len()..], b"tail");
}

#[test]
fn a_writer_thread_that_dies_mid_record_leaves_nothing_torn() {
    let ring = Arc::new(Ring::create(1 << 24, 0).unwrap());
    ring.put(1, &[b"before"], false, None).unwrap();
    let dying = {
        let ring = ring.clone();
        std::thread::spawn(move || {
            let header = ring.header();
            header.write_lock.lock(None).unwrap();
            // Half a record, spanning into a block it links, then the thread ends holding the
            // lock: the kernel marks the robust mutex's owner dead.
            let (block, offset) = unpack(header.published.load(Ordering::Relaxed));
            // SAFETY: past the published end, with the write lock held.
            unsafe { std::ptr::write_bytes(ring.block_ptr(block).add(offset as usize), 0xAB, 64) };
            let _ = ring.next_block(block);
        })
    };
    dying.join().unwrap();
    assert_eq!(ring.writers_recovered(), 0);
    ring.put(2, &[&vec![5u8; 3 * BLOCK]], false, soon())
        .unwrap();
    assert_eq!(ring.writers_recovered(), 1);
    ring.put(3, &[b"after"], false, soon()).unwrap();
    assert_eq!(take_vec(&ring, now()), Some((1, b"before".to_vec())));
    assert_eq!(take_vec(&ring, now()), Some((2, vec![5u8; 3 * BLOCK])));
    assert_eq!(take_vec(&ring, now()), Some((3, b"after".to_vec())));
    assert!(ring.is_empty());
}

#[test]
fn a_reader_thread_that_dies_mid_record_leaves_it_to_the_next() {
    let ring = Arc::new(Ring::create(1 << 24, 0).unwrap());
    ring.put(7, &[b"kept"], false, None).unwrap();
    let dying = {
        let ring = ring.clone();
        std::thread::spawn(move || {
            ring.header().read_lock.lock(None).unwrap();
        })
    };
    dying.join().unwrap();
    assert_eq!(take_vec(&ring, soon()), Some((7, b"kept".to_vec())));
}

#[test]
fn blocks_are_reused_so_memory_stays_bounded() {
    let ring = Ring::create(1 << 30, 0).unwrap();
    let data = vec![1u8; 100 * 1024];
    for _ in 0..10_000 {
        ring.put(0, &[&data], false, None).unwrap();
        take_vec(&ring, None).unwrap();
    }
    assert!(ring.region.len().unwrap() < 16 * BLOCK);
}

#[test]
fn a_bounded_ring_waits_for_room() {
    let ring = Ring::create(1 << 24, 2).unwrap();
    ring.put(0, &[b"a"], false, None).unwrap();
    ring.put(0, &[b"b"], false, None).unwrap();
    assert!(ring.is_full());
    let until = Instant::now() + Duration::from_millis(50);
    assert!(matches!(
        ring.put(0, &[b"c"], false, Some(until)),
        Err(PutError::Full)
    ));
    assert!(Instant::now() >= until);
    take_vec(&ring, None).unwrap();
    ring.put(0, &[b"c"], false, soon()).unwrap();
    assert_eq!(ring.len(), 2);
}

#[test]
fn a_writer_waiting_for_room_wakes_when_a_reader_takes() {
    let ring = Arc::new(Ring::create(1 << 24, 1).unwrap());
    ring.put(0, &[b"a"], false, None).unwrap();
    let reader = {
        let ring = ring.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            take_vec(&ring, soon()).unwrap()
        })
    };
    ring.put(0, &[b"b"], false, soon()).unwrap();
    assert_eq!(reader.join().unwrap(), (0, b"a".to_vec()));
}

#[test]
fn an_unbounded_ring_waits_for_room_only_when_its_reservation_is_in_use() {
    let ring = Ring::create(4 * BLOCK, 0).unwrap();
    let record = vec![0u8; BLOCK / 2];
    let mut put = 0;
    while ring.put(0, &[&record], false, now()).is_ok() {
        put += 1;
    }
    assert!(put >= 4, "{put} records fit");
    take_vec(&ring, now()).unwrap();
    take_vec(&ring, now()).unwrap();
    take_vec(&ring, now()).unwrap();
    ring.put(0, &[&record], false, now()).unwrap();
}

#[test]
fn a_record_larger_than_the_reservation_is_refused() {
    let ring = Ring::create(4 * BLOCK, 0).unwrap();
    assert!(matches!(
        ring.put(0, &[&vec![0u8; 8 * BLOCK]], false, soon()),
        Err(PutError::TooLarge)
    ));
}

#[test]
fn a_take_waits_for_a_writer() {
    let ring = Arc::new(Ring::create(1 << 24, 0).unwrap());
    let writer = {
        let ring = ring.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            ring.put(9, &[b"late"], false, None).unwrap();
        })
    };
    assert_eq!(take_vec(&ring, soon()), Some((9, b"late".to_vec())));
    writer.join().unwrap();
}

#[test]
fn a_take_times_out_on_an_empty_ring() {
    let ring = Ring::create(1 << 24, 0).unwrap();
    let start = Instant::now();
    assert_eq!(
        take_vec(&ring, Some(start + Duration::from_millis(30))),
        None
    );
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[test]
fn many_records_go_in_and_out_in_one_step_each() {
    let ring = Ring::create(1 << 24, 3).unwrap();
    let parts: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10]).collect();
    let pieces: Vec<[&[u8]; 1]> = parts.iter().map(|part| [&part[..]]).collect();
    let records: Vec<Record<'_>> = pieces.iter().map(|p| (1, &p[..])).collect();
    // Three fit in the bounded ring; the rest wait for room, which does not come.
    assert!(matches!(
        ring.put_many(&records, false, now()),
        Err((3, PutError::Full))
    ));
    let mut got = Vec::new();
    assert_eq!(
        ring.take_many(2, true, |_, p| got.push(p.concat()))
            .unwrap(),
        2
    );
    assert_eq!(ring.put_many(&records[3..], false, now()).unwrap(), 2);
    assert_eq!(
        ring.take_many(10, true, |_, p| got.push(p.concat()))
            .unwrap(),
        3
    );
    assert_eq!(got, parts);
}

#[test]
fn peek_shows_the_oldest_record_without_taking_it() {
    let ring = Ring::create(1 << 24, 0).unwrap();
    assert_eq!(ring.peek(), None);
    ring.put(6, &[b"12345"], false, None).unwrap();
    ring.put(7, &[b"1"], false, None).unwrap();
    assert_eq!(ring.peek(), Some((5, 6)));
    assert_eq!(ring.len(), 2);
}

#[test]
fn the_descriptor_is_readable_exactly_while_a_record_waits() {
    let ring = Ring::create(1 << 24, 0).unwrap();
    ring.attach(Role::Write);
    let readable = |ring: &Ring| {
        let fd = ring.poll_fd();
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut fds, Some(&zero)).unwrap() == 1
    };
    assert!(!readable(&ring));
    ring.put(0, &[b"x"], false, None).unwrap();
    ring.put(0, &[b"y"], false, None).unwrap();
    assert!(readable(&ring));
    take_vec(&ring, None).unwrap();
    assert!(readable(&ring));
    take_vec(&ring, None).unwrap();
    assert!(!readable(&ring));
    ring.detach(Role::Write);
    assert!(
        readable(&ring),
        "no writer left: readable, as a pipe at its end"
    );
}

#[test]
fn unfinished_tasks_are_counted() {
    let ring = Ring::create(1 << 24, 0).unwrap();
    ring.put(0, &[b"t"], true, None).unwrap();
    assert_eq!(ring.unfinished(), 1);
    assert!(!ring.wait_unfinished(Some(Instant::now() + Duration::from_millis(10))));
    assert!(ring.task_done());
    assert!(!ring.task_done());
    assert!(ring.wait_unfinished(None));
}

#[test]
fn holders_are_counted_by_role_and_a_handle_in_transit_suspends_judgment() {
    let ring = Ring::create(1 << 24, 0).unwrap();
    ring.attach(Role::Read);
    ring.attach(Role::Write);
    ring.attach(Role::Write);
    assert_eq!(ring.held_here(Role::Write), 2);
    assert_eq!(
        ring.writers(),
        Writers {
            elsewhere: Some(0),
            here: 2
        }
    );
    ring.send_handle();
    assert_eq!(ring.writers().elsewhere, None);
    ring.handle_arrived();
    assert_eq!(ring.writers().elsewhere, Some(0));
    ring.detach(Role::Write);
    ring.detach(Role::Write);
    ring.detach(Role::Write); // one too many changes nothing
    assert_eq!(ring.held_here(Role::Write), 0);
    assert_eq!(ring.held_here(Role::Read), 1);
}

#[test]
fn a_ring_opens_from_its_descriptors_and_is_the_same_ring() {
    let ring = Ring::create(1 << 24, 5).unwrap();
    let (fd, events) = ring.fds();
    let other = Ring::open(
        fd.try_clone_to_owned().unwrap(),
        events.try_clone_to_owned().unwrap(),
    )
    .unwrap();
    assert_eq!(other.maxsize(), 5);
    assert_eq!(other.capacity(), ring.capacity());
    ring.put(1, &[b"across"], false, None).unwrap();
    assert_eq!(take_vec(&other, now()), Some((1, b"across".to_vec())));
}

#[test]
fn a_descriptor_that_is_not_a_ring_is_refused() {
    let ring = Ring::create(1 << 24, 0).unwrap();
    let (_, events) = ring.fds();
    let memfd = rustix::fs::memfd_create("other", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&memfd, 1 << 20).unwrap();
    let error = Ring::open(memfd, events.try_clone_to_owned().unwrap()).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
}

#[test]
fn an_adopted_handle_let_go_before_its_parent_counted_it_leaves_nothing_counted() {
    // A child may run and close its handle before its parent counts the handle for it.
    let ring = Ring::create(1 << 24, 0).unwrap();
    let pid = crate::holders::this_pid();
    ring.send_handle();
    ring.detach_adopted(Role::Write);
    assert_eq!(ring.held_here(Role::Write), 0);
    ring.attach_for(pid, 0, Role::Write); // the parent's count pays the debt off
    ring.handle_arrived();
    assert_eq!(ring.held_here(Role::Write), 0);
    assert_eq!(ring.listed(Role::Write), Some(0));
    // Counted first, then let go: the usual way.
    ring.attach_for(pid, 0, Role::Write);
    ring.detach_adopted(Role::Write);
    assert_eq!(ring.listed(Role::Write), Some(0));
}
