//! The ring between real processes: records cross, a writer or a reader killed with `SIGKILL` in
//! the middle of a record tears nothing, the dead (zombies included) hold nothing.
//!
//! These tests fork, so they run in a binary of their own without the test harness (whose
//! threads would make `fork` unsafe): `main` runs them one after another, single-threaded.

use std::time::{Duration, Instant};
use treadle_os::holders::Role;
use treadle_os::ring::Ring;

/// Runs `body` in a child process, which then exits at once with status 0.
fn in_child(body: impl FnOnce()) -> libc::pid_t {
    // SAFETY: this binary has one thread (no harness), so the child may run any code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        body();
        // SAFETY: ends the child at once, without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    pid
}

fn kill(pid: libc::pid_t) {
    // SAFETY: plain system call on our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Waits for child `pid` to end; its wait status.
fn reap(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: `pid` is this process's child; `status` outlives the call.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    status
}

fn soon() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(10))
}

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

fn records_arrive_whole_and_in_order_across_processes() {
    let ring = Ring::create(1 << 26, 0).unwrap();
    let sizes: Vec<usize> = (0..2000).map(|i| (i * 997) % (200 * 1024)).collect();
    let child_sizes = sizes.clone();
    let child = in_child(|| {
        for (i, size) in child_sizes.iter().enumerate() {
            let byte = (i % 251) as u8;
            ring.put(i as u32, &[&vec![byte; *size]], false, None)
                .unwrap();
        }
    });
    for (i, size) in sizes.iter().enumerate() {
        let (kind, data) = take_vec(&ring, soon()).expect("a record");
        assert_eq!(kind, i as u32);
        assert_eq!(data.len(), *size);
        assert!(data.iter().all(|b| *b == (i % 251) as u8));
    }
    assert_eq!(reap(child), 0);
    assert!(ring.is_empty());
}

/// Writes records of 8 MiB, each filled with its number, until killed.
fn write_until_killed(ring: &Ring) {
    let mut record = vec![0u8; 8 << 20];
    for i in 0u32.. {
        record.fill((i % 251) as u8);
        ring.put(i, &[&record], false, None).unwrap();
    }
}

fn a_writer_killed_mid_record_leaves_nothing_torn() {
    // The kill lands between two records now and then: try until it lands in one, which the
    // next writer learns from the robust mutex (and counts).
    for attempt in 0..50 {
        let ring = Ring::create(1 << 30, 0).unwrap();
        let child = in_child(|| write_until_killed(&ring));
        take_vec(&ring, soon()).expect("the writer's first record");
        std::thread::sleep(Duration::from_micros(300 * (attempt % 7)));
        kill(child);
        reap(child);
        ring.put(u32::MAX, &[b"after"], false, soon()).unwrap();
        let recovered = ring.writers_recovered() == 1;
        let mut next = 1u32;
        loop {
            let (kind, data) = take_vec(&ring, soon()).expect("a record");
            if kind == u32::MAX {
                assert_eq!(data, b"after");
                break;
            }
            assert_eq!(kind, next, "records in order, none lost or repeated");
            assert_eq!(data.len(), 8 << 20, "record {kind} is whole");
            assert!(
                data.iter().all(|b| *b == (kind % 251) as u8),
                "record {kind} is whole"
            );
            next += 1;
        }
        assert!(ring.is_empty());
        if recovered {
            return;
        }
    }
    panic!("the writer was never killed in the middle of a record");
}

fn a_reader_killed_mid_record_leaves_it_to_the_next() {
    let ring = Ring::create(1 << 24, 0).unwrap();
    let started = Ring::create(1 << 20, 0).unwrap();
    ring.put(7, &[b"kept"], false, None).unwrap();
    let child = in_child(|| {
        ring.take(true, |_, _| {
            started.put(0, &[b"reading"], false, None).unwrap();
            std::thread::sleep(Duration::from_secs(60));
        })
        .unwrap();
    });
    take_vec(&started, soon()).expect("the reader started");
    kill(child);
    reap(child);
    assert_eq!(take_vec(&ring, soon()), Some((7, b"kept".to_vec())));
}

fn a_take_waits_for_a_writer_in_another_process() {
    let ring = Ring::create(1 << 24, 0).unwrap();
    let child = in_child(|| {
        std::thread::sleep(Duration::from_millis(50));
        ring.put(9, &[b"late"], false, None).unwrap();
    });
    assert_eq!(take_vec(&ring, soon()), Some((9, b"late".to_vec())));
    assert_eq!(reap(child), 0);
}

fn the_dead_and_the_zombies_hold_nothing() {
    let ring = Ring::create(1 << 24, 0).unwrap();
    let attached = Ring::create(1 << 20, 0).unwrap();
    ring.attach(Role::Read);
    let child = in_child(|| {
        ring.attach(Role::Write);
        attached.put(0, &[b"attached"], false, None).unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    take_vec(&attached, soon()).expect("the child attached");
    assert_eq!(ring.held_elsewhere(Role::Write), Some(1));
    kill(child);
    // Killed but not reaped: a zombie, which holds nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ring.held_elsewhere(Role::Write) != Some(0) {
        assert!(
            Instant::now() < deadline,
            "a zombie still counts as a writer"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    reap(child);
    assert_eq!(ring.held_elsewhere(Role::Write), Some(0));
    assert_eq!(ring.held_here(Role::Read), 1);
}

fn a_child_counted_by_its_parent_is_a_writer_from_the_start() {
    let ring = Ring::create(1 << 24, 0).unwrap();
    let go = Ring::create(1 << 20, 0).unwrap();
    let child = in_child(|| {
        take_vec(&go, soon());
    });
    ring.attach_for(child as u32, 0, Role::Write);
    assert_eq!(ring.held_elsewhere(Role::Write), Some(1));
    go.put(0, &[b"go"], false, None).unwrap();
    reap(child);
    assert_eq!(ring.held_elsewhere(Role::Write), Some(0));
}

fn main() {
    let tests: [(&str, fn()); 7] = [
        (
            "records_arrive_whole_and_in_order_across_processes",
            records_arrive_whole_and_in_order_across_processes,
        ),
        (
            "a_writer_killed_mid_record_leaves_nothing_torn",
            a_writer_killed_mid_record_leaves_nothing_torn,
        ),
        (
            "a_reader_killed_mid_record_leaves_it_to_the_next",
            a_reader_killed_mid_record_leaves_it_to_the_next,
        ),
        (
            "a_take_waits_for_a_writer_in_another_process",
            a_take_waits_for_a_writer_in_another_process,
        ),
        (
            "the_dead_and_the_zombies_hold_nothing",
            the_dead_and_the_zombies_hold_nothing,
        ),
        (
            "a_child_counted_by_its_parent_is_a_writer_from_the_start",
            a_child_counted_by_its_parent_is_a_writer_from_the_start,
        ),
        ("ring_round_trips", ring_round_trips),
    ];
    // A hang is a failure: the whole binary is killed if it runs this long.
    // SAFETY: plain system call; SIGALRM's default action ends the process.
    unsafe { libc::alarm(120) };
    for (name, test) in tests {
        print!("test {name} ... ");
        test();
        println!("ok");
    }
}

fn ring_round_trips() {
    let there = Ring::create(1 << 24, 0).unwrap();
    let back = Ring::create(1 << 24, 0).unwrap();
    let child = in_child(|| {
        for _ in 0..1000 {
            let (kind, data) = take_vec(&there, soon()).unwrap();
            back.put(kind + 1, &[&data], false, None).unwrap();
        }
    });
    for i in 0..1000u32 {
        there.put(i, &[&i.to_le_bytes()], false, None).unwrap();
        assert_eq!(
            take_vec(&back, soon()),
            Some((i + 1, i.to_le_bytes().to_vec()))
        );
    }
    assert_eq!(reap(child), 0);
}
