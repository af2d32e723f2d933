use super::*;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

fn reopened(lock: &SharedLock) -> SharedLock {
    SharedLock::open(lock.fd(), lock.slot()).expect("open")
}

/// The lock through a mapping of its own, as another process has it.
fn mapped_again(lock: &SharedLock) -> SharedLock {
    let fd = lock.fd().try_clone_to_owned().expect("dup");
    let arena = Arc::new(Arena {
        region: Region::map(fd, ARENA).expect("map"),
        inode: lock.arena.inode,
    });
    SharedLock::in_slot(arena, lock.slot(), lock.kind(), lock.maxvalue())
}

#[test]
fn locks_share_arenas_a_slot_each() {
    let locks: Vec<SharedLock> = (0..ARENA_SLOTS + 44)
        .map(|_| SharedLock::create(Kind::Lock, 1, 1).unwrap())
        .collect();
    let mut ids: Vec<u64> = locks.iter().map(SharedLock::id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), locks.len());
    // Other tests carve too, meanwhile: still a few arenas, not a descriptor per lock.
    let mut fds: Vec<i32> = locks.iter().map(|lock| lock.fd().as_raw_fd()).collect();
    fds.sort_unstable();
    fds.dedup();
    assert!((2..=3).contains(&fds.len()), "{fds:?}");
    for (i, lock) in locks.iter().enumerate() {
        if i % 2 == 0 {
            assert!(lock.try_acquire());
        }
    }
    for (i, lock) in locks.iter().enumerate() {
        assert_eq!(lock.value(), u32::from(i % 2 == 1), "lock {i}");
    }
}

#[test]
fn a_lock_received_maps_its_arena_once_and_is_checked() {
    let lock = SharedLock::create(Kind::RLock, 1, 1).unwrap();
    let other = reopened(&lock);
    assert_eq!(other.fd().as_raw_fd(), lock.fd().as_raw_fd());
    assert_eq!((other.id(), other.kind()), (lock.id(), Kind::RLock));
    assert!(lock.try_acquire());
    assert_eq!(other.holder(), lock.holder());
    let not_a_lock = io::ErrorKind::InvalidData;
    let past = SharedLock::open(lock.fd(), ARENA_SLOTS).unwrap_err();
    assert_eq!(past.kind(), not_a_lock);
    // A slot not handed out (of an arena nobody carves from).
    let fresh = Arena::create().unwrap();
    let unused = SharedLock::open(fresh.region.fd(), 0).unwrap_err();
    assert_eq!(unused.kind(), not_a_lock);
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    assert!(SharedLock::open(file.as_fd(), 0).is_err());
}

#[test]
fn lock_is_taken_once_and_released_by_anyone() {
    let lock = Arc::new(SharedLock::create(Kind::Lock, 1, 1).unwrap());
    assert!(lock.try_acquire());
    assert!(!lock.try_acquire());
    assert!(lock.is_mine());
    let other = Arc::clone(&lock);
    std::thread::spawn(move || {
        assert!(!other.is_mine());
        other.release().unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(lock.release(), Err(ReleaseError::TooManyReleases));
    assert_eq!(lock.value(), 1);
}

#[test]
fn rlock_is_reentrant_and_owner_only() {
    let lock = Arc::new(SharedLock::create(Kind::RLock, 1, 1).unwrap());
    assert!(lock.try_acquire());
    assert!(lock.try_acquire());
    assert_eq!(lock.count_here(), 2);
    let other = Arc::clone(&lock);
    std::thread::spawn(move || {
        assert!(!other.try_acquire());
        assert_eq!(other.release(), Err(ReleaseError::NotOwner));
    })
    .join()
    .unwrap();
    lock.release().unwrap();
    lock.release().unwrap();
    assert_eq!(lock.release(), Err(ReleaseError::NotOwner));
}

#[test]
fn semaphore_counts_and_respects_its_bound() {
    let sem = SharedLock::create(Kind::Semaphore, 2, 2).unwrap();
    assert!(sem.try_acquire());
    assert!(sem.try_acquire());
    assert!(!sem.try_acquire());
    let soon = Some(Instant::now() + Duration::from_millis(20));
    assert_eq!(sem.acquire_until(soon, Watch::default()), Acquire::TimedOut);
    sem.release().unwrap();
    sem.release().unwrap();
    assert_eq!(sem.release(), Err(ReleaseError::TooManyReleases));
    assert_eq!(sem.value(), 2);
}

#[test]
fn a_waiter_is_woken_by_a_release_in_another_mapping() {
    let lock = SharedLock::create(Kind::Lock, 1, 1).unwrap();
    let other = mapped_again(&lock);
    assert_ne!(other.fd().as_raw_fd(), lock.fd().as_raw_fd());
    assert!(lock.try_acquire());
    let waiter = std::thread::spawn(move || other.acquire_until(None, Watch::default()));
    std::thread::sleep(Duration::from_millis(20));
    lock.release().unwrap();
    assert_eq!(waiter.join().unwrap(), Acquire::Taken);
}

#[test]
fn a_dead_owner_is_reported_once_and_the_lock_freed() {
    for kind in [Kind::Lock, Kind::RLock] {
        let lock = SharedLock::create(kind, 1, 1).unwrap();
        let pid = dead_pid();
        lock.shared().word.store(pid, Ordering::Relaxed);
        lock.shared().tid.store(pid, Ordering::Relaxed);
        let soon = Some(Instant::now() + Duration::from_secs(5));
        match lock.acquire_until(soon, Watch::default()) {
            Acquire::OwnerDied(dead) => {
                assert_eq!(dead.pid, pid);
                assert_eq!(dead.tid, pid);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(lock.value(), 1);
        assert_eq!(lock.recovered(), 1);
        assert_eq!(lock.acquire_until(soon, Watch::default()), Acquire::Taken);
    }
}

#[test]
fn a_live_owner_is_waited_for() {
    let lock = SharedLock::create(Kind::Lock, 1, 1).unwrap();
    let other = reopened(&lock);
    assert!(lock.try_acquire());
    let soon = Some(Instant::now() + LIVENESS_POLL * 3);
    assert_eq!(
        other.acquire_until(soon, Watch::default()),
        Acquire::TimedOut
    );
}

#[test]
fn the_owner_name_is_kept_for_the_report() {
    let lock = SharedLock::create(Kind::Lock, 1, 1).unwrap();
    lock.record_name("Worker-1");
    assert!(lock.name_recorded());
    assert_eq!(lock.recorded_name(me().pid), "Worker-1");
}

#[test]
fn processes_taking_turns_keep_a_name_each() {
    let lock = SharedLock::create(Kind::Lock, 1, 1).unwrap();
    let other = reopened(&lock);
    lock.record_name("Worker-1");
    // Another process's name, in a slot of its own.
    let pid = dead_pid();
    let slot = &lock.shared().names[1];
    slot.name[0].store(u64::from_ne_bytes(*b"Worker-2"), Ordering::Relaxed);
    slot.len.store(8, Ordering::Relaxed);
    slot.pid.store(pid, Ordering::Release);
    assert_eq!(lock.recorded_name(pid), "Worker-2");
    assert_eq!(lock.recorded_name(me().pid), "Worker-1");
    // The name is recorded once per process, not per lock object of it.
    assert!(!other.name_recorded());
    other.record_name("Worker-1b");
    assert_eq!(lock.recorded_name(me().pid), "Worker-1b");
    assert_eq!(lock.recorded_name(pid), "Worker-2");
}

/// Two threads, each holding one of `a` and `b` (registered), then waiting for the other
/// (until `deadline`, watched as `timed` says); what each wait gave, and the cycles reported.
fn opposite_orders(
    a: SharedLock,
    b: SharedLock,
    timed: bool,
    deadline: Option<Instant>,
) -> ([Acquire; 2], Vec<Vec<CycleEdge>>, [u64; 2]) {
    let (a, b) = (Arc::new(a), Arc::new(b));
    register(&a);
    register(&b);
    let watch = Watch {
        detect: true,
        timed,
    };
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let take = |first: Arc<SharedLock>, second: Arc<SharedLock>| {
        let barrier = Arc::clone(&barrier);
        std::thread::spawn(move || {
            assert!(first.try_acquire());
            barrier.wait();
            let outcome = second.acquire_until(deadline, watch);
            if outcome == Acquire::Taken {
                second.release().unwrap();
            }
            first.release().unwrap();
            outcome
        })
    };
    let one = take(Arc::clone(&a), Arc::clone(&b));
    let two = take(Arc::clone(&b), Arc::clone(&a));
    let outcomes = [one.join().unwrap(), two.join().unwrap()];
    let cycles = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Acquire::Deadlock(cycle) => Some(cycle.clone()),
            _ => None,
        })
        .collect();
    (outcomes, cycles, [a.id(), b.id()])
}

#[test]
fn a_cycle_through_waits_with_deadlines_is_not_a_deadlock() {
    let (outcomes, cycles, _) = opposite_orders(
        SharedLock::create(Kind::Lock, 1, 1).unwrap(),
        SharedLock::create(Kind::RLock, 1, 1).unwrap(),
        true,
        Some(Instant::now() + LIVENESS_POLL * 3),
    );
    assert!(cycles.is_empty(), "{outcomes:?}");
    assert!(outcomes.contains(&Acquire::TimedOut), "{outcomes:?}");
}

#[test]
fn an_untimed_lock_order_cycle_is_reported_by_exactly_one_waiter() {
    let (outcomes, cycles, [a, b]) = opposite_orders(
        SharedLock::create(Kind::Lock, 1, 1).unwrap(),
        SharedLock::create(Kind::Lock, 1, 1).unwrap(),
        false,
        None,
    );
    assert_eq!(cycles.len(), 1, "{outcomes:?}");
    let cycle = &cycles[0];
    assert_eq!(cycle.len(), 2);
    assert_eq!(cycle[0].holder, cycle[1].waiter);
    assert_eq!(cycle[1].holder, cycle[0].waiter);
    let ids: Vec<u64> = cycle.iter().map(|edge| edge.lock).collect();
    assert!(ids.contains(&a) && ids.contains(&b));
}

#[test]
fn a_sleeping_waiter_marks_the_lock_and_the_release_that_wakes_it_clears_the_mark() {
    let lock = SharedLock::create(Kind::Lock, 1, 1).unwrap();
    let other = reopened(&lock);
    assert!(lock.try_acquire());
    let word = || lock.shared().word.load(Ordering::SeqCst);
    assert_eq!(word() & CONTENDED, 0, "no waiter, no mark");
    let waiter = std::thread::spawn(move || {
        let taken = other.acquire_until(None, Watch::default());
        // Taken marked: other waiters might sleep, so its release must wake.
        let marked = other.shared().word.load(Ordering::SeqCst) & CONTENDED != 0;
        other.release().unwrap();
        (taken, marked)
    });
    let marked_by = Instant::now() + Duration::from_secs(10);
    while word() & CONTENDED == 0 {
        assert!(
            Instant::now() < marked_by,
            "the waiter never marked the lock"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    lock.release().unwrap();
    assert_eq!(waiter.join().unwrap(), (Acquire::Taken, true));
    // The releases after the one that woke the waiter do not call the kernel: no mark.
    for _ in 0..100 {
        assert!(lock.try_acquire());
        assert_eq!(word() & CONTENDED, 0);
        lock.release().unwrap();
    }
}

#[test]
fn threads_taking_turns_lose_no_increment_and_no_wake_up() {
    let lock = SharedLock::create(Kind::Lock, 1, 1).unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let lock = reopened(&lock);
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    if !lock.try_acquire() {
                        assert_eq!(lock.acquire_until(None, Watch::default()), Acquire::Taken);
                    }
                    // Not an atomic add: the lock alone keeps increments from being lost.
                    count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    lock.release().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(count.load(Ordering::Relaxed), 80_000);
    assert_eq!(lock.value(), 1);
}
