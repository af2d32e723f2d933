use super::*;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn try_acquire_fails_while_held_and_succeeds_after_release() {
    let lock = RawLock::new();
    assert!(lock.try_acquire());
    assert!(!lock.try_acquire());
    assert!(lock.is_locked());
    lock.release().unwrap();
    assert!(!lock.is_locked());
    assert!(lock.try_acquire());
}

#[test]
fn release_of_unlocked_lock_is_an_error() {
    let lock = RawLock::new();
    assert_eq!(lock.release(), Err(LockError::NotLocked));
}

#[test]
fn acquire_times_out_while_held() {
    let lock = RawLock::new();
    lock.try_acquire();
    let start = Instant::now();
    assert!(!lock.acquire_until(Some(start + Duration::from_millis(50))));
    assert!(start.elapsed() >= Duration::from_millis(50));
    lock.release().unwrap();
    assert!(
        lock.try_acquire(),
        "a timed-out wait must leave the lock usable"
    );
}

#[test]
fn another_thread_may_release() {
    let lock = Arc::new(RawLock::new());
    lock.try_acquire();
    let other = lock.clone();
    thread::spawn(move || other.release().unwrap())
        .join()
        .unwrap();
    assert!(lock.try_acquire());
}

#[test]
fn contended_counter_is_exact() {
    let lock = Arc::new(RawLock::new());
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (lock, counter) = (lock.clone(), counter.clone());
            thread::spawn(move || {
                for _ in 0..20_000 {
                    assert!(lock.acquire_until(None));
                    // A non-atomic read-modify-write: lost updates would show a broken lock.
                    let seen = counter.load(std::sync::atomic::Ordering::Relaxed);
                    counter.store(seen + 1, std::sync::atomic::Ordering::Relaxed);
                    lock.release().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), 80_000);
}

#[test]
fn reset_after_fork_unlocks() {
    let lock = RawLock::new();
    lock.try_acquire();
    lock.reset_after_fork();
    assert!(lock.try_acquire());
}
