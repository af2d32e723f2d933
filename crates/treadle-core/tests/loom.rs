//! Model checks of the atomic integer, the lock, the condition queue, the event, the queue, the future and the pool
//! under every interleaving loom explores. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p treadle-core --test loom --release`.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use treadle_core::{AtomicInt, Event, GetError, Order, Queue, RawLock, WaitQueue};

#[test]
fn atomic_int_adds_racing_a_compare_exchange_lose_nothing() {
    loom::model(|| {
        let n = Arc::new(AtomicInt::new(0));
        let adder = {
            let n = n.clone();
            thread::spawn(move || n.fetch_add(2).unwrap())
        };
        let swapped = n.compare_exchange(0, 10).is_ok();
        adder.join().unwrap();
        // Either the swap saw 0 and the add came after it, or the add came first and the swap
        // failed: never a lost update.
        assert_eq!(n.load(), if swapped { 12 } else { 2 });
    });
}

#[test]
fn lock_gives_mutual_exclusion_and_no_lost_wakeup() {
    loom::model(|| {
        let lock = Arc::new(RawLock::new());
        let inside = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (lock, inside) = (lock.clone(), inside.clone());
                thread::spawn(move || {
                    assert!(lock.acquire_until(None));
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    lock.release().unwrap();
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert!(!lock.is_locked());
    });
}

#[test]
fn lock_timeout_leaves_lock_consistent() {
    loom::model(|| {
        let lock = Arc::new(RawLock::new());
        assert!(lock.try_acquire());
        let other = lock.clone();
        let handle = thread::spawn(move || {
            // Under loom a deadline expires at once: the timed-out path is what is explored.
            let got = other.acquire_until(Some(std::time::Instant::now()));
            if got {
                other.release().unwrap();
            }
        });
        lock.release().unwrap();
        handle.join().unwrap();
        assert!(lock.try_acquire());
    });
}

#[test]
fn condition_queue_notification_is_not_lost() {
    loom::model(|| {
        let queue = Arc::new(WaitQueue::new());
        let waiter = queue.enqueue();
        let notifier = {
            let queue = queue.clone();
            thread::spawn(move || {
                assert_eq!(queue.notify(1), 1);
            })
        };
        assert!(waiter.wait_until(None));
        notifier.join().unwrap();
    });
}

#[test]
fn condition_withdraw_races_notify_without_losing_it() {
    loom::model(|| {
        let queue = Arc::new(WaitQueue::new());
        let waiter = queue.enqueue();
        let notifier = {
            let queue = queue.clone();
            thread::spawn(move || queue.notify(1))
        };
        let withdrew = queue.withdraw(&waiter);
        let woken = notifier.join().unwrap();
        // Either the waiter left first (nobody was woken) or the notification is its own.
        assert_eq!(withdrew, woken == 0);
        assert_eq!(waiter.is_notified(), woken == 1);
    });
}

#[test]
fn event_set_then_clear_still_releases_waiter() {
    loom::model(|| {
        let event = Arc::new(Event::new());
        let ticket = event.ticket();
        let setter = {
            let event = event.clone();
            thread::spawn(move || {
                event.set();
                event.clear();
            })
        };
        assert!(event.wait_until(ticket, None));
        setter.join().unwrap();
    });
}

#[test]
fn queue_blocked_put_and_get_never_miss_a_wakeup() {
    loom::model(|| {
        let queue = Arc::new(Queue::new(Order::Fifo, 1));
        let producer = {
            let queue = queue.clone();
            thread::spawn(move || {
                for i in 0..2 {
                    queue.put_until(i, None).unwrap();
                }
            })
        };
        let got: Vec<i32> = (0..2).map(|_| queue.get_until(None).unwrap()).collect();
        producer.join().unwrap();
        assert_eq!(got, [0, 1]);
    });
}

#[test]
fn queue_shutdown_releases_a_blocked_getter() {
    loom::model(|| {
        let queue = Arc::new(Queue::<i32>::new(Order::Fifo, 0));
        let getter = {
            let queue = queue.clone();
            thread::spawn(move || queue.get_until(None))
        };
        queue.shutdown(false).unwrap();
        assert_eq!(getter.join().unwrap(), Err(GetError::ShutDown));
    });
}

struct Plain;

impl treadle_core::TaskTypes for Plain {
    type Job = u32;
    type Value = u32;
    type Callback = ();
}

#[test]
fn future_cancel_racing_a_worker_lets_exactly_one_win() {
    use treadle_core::{FutureCell, Start};
    loom::model(|| {
        let cell = Arc::new(FutureCell::<Plain>::new(Some(7)));
        let worker = {
            let cell = cell.clone();
            thread::spawn(move || matches!(cell.start(), Start::Started(Some(7))))
        };
        let cancelled = matches!(cell.cancel(), Ok(Some(_)));
        let started = worker.join().unwrap();
        // The job runs at most once, and a cancelled future never runs it.
        assert!(cancelled != started);
    });
}

#[test]
fn future_waiter_sees_the_completion() {
    use treadle_core::{FutureCell, Outcome};
    loom::model(|| {
        let cell = Arc::new(FutureCell::<Plain>::new(None));
        let finisher = {
            let cell = cell.clone();
            thread::spawn(move || {
                assert!(cell.finish(Outcome::Returned(1)).is_ok());
            })
        };
        assert!(cell.wait(None));
        finisher.join().unwrap();
    });
}

/// A one-worker pool whose worker goes idle and asks for its next step, on a thread of its
/// own: returns the pool and that thread, which answers whether the step was the expected one.
fn pool_with_a_worker_expecting(
    expected: fn(&treadle_core::Next<Plain>) -> bool,
) -> (Arc<treadle_core::Pool<Plain>>, thread::JoinHandle<bool>) {
    let pool = Arc::new(treadle_core::Pool::<Plain>::new(1, 0));
    let worker = {
        let pool = pool.clone();
        thread::spawn(move || {
            pool.worker_idle();
            expected(&pool.next(None))
        })
    };
    (pool, worker)
}

#[test]
fn pool_submission_reaches_a_worker_parking_at_the_same_time() {
    use treadle_core::{FutureCell, Next};
    loom::model(|| {
        let (pool, worker) = pool_with_a_worker_expecting(|next| matches!(next, Next::Run(_)));
        let cell = std::sync::Arc::new(FutureCell::<Plain>::new(Some(1)));
        // Whether or not the worker was counted idle yet, the future is taken (a lost wake-up
        // would leave the worker parked forever, which loom reports as a deadlock).
        assert!(pool.submit(&cell, None).is_ok());
        assert!(worker.join().unwrap());
        assert_eq!(pool.pending(), 0);
    });
}

#[test]
fn pool_shutdown_releases_a_parked_worker() {
    use treadle_core::Next;
    loom::model(|| {
        let (pool, worker) = pool_with_a_worker_expecting(|next| matches!(next, Next::Exit));
        assert!(pool.shutdown(false).is_empty());
        assert!(worker.join().unwrap());
    });
}

#[test]
fn pool_spare_is_woken_or_replaced_for_a_worker_that_blocks() {
    use treadle_core::pool::Blocking;
    use treadle_core::{FutureCell, Next, Outcome};
    loom::model(|| {
        // A pool of one whose worker blocked on a queued future; a second thread ran it, and is
        // now a thread too many: it stands aside as a spare.
        let pool = Arc::new(treadle_core::Pool::<Plain>::new(1, 0));
        let first = std::sync::Arc::new(FutureCell::<Plain>::new(Some(0)));
        pool.submit(&first, None).unwrap();
        assert!(matches!(pool.next(None), Next::Run(_)));
        let waited = std::sync::Arc::new(FutureCell::<Plain>::new(Some(1)));
        pool.submit(&waited, None).unwrap();
        assert_eq!(pool.worker_blocks(&[waited.clone()]), Blocking::StartThread);
        pool.worker_idle();
        assert!(matches!(pool.next(None), Next::Run(_)));
        waited.finish(Outcome::Returned(1)).unwrap();
        pool.worker_idle();
        assert!(matches!(pool.next(None), Next::Spare));
        pool.worker_unblocks();
        let spare = {
            let pool = pool.clone();
            thread::spawn(move || pool.wait_as_spare())
        };
        // The worker blocks again, racing the spare's retirement: either the spare comes back
        // (and the worker just waits), or it retired and the worker is told to start a thread.
        // Never both gone: the queued future would have nobody to run it.
        let next = std::sync::Arc::new(FutureCell::<Plain>::new(Some(2)));
        pool.submit(&next, None).unwrap();
        let blocking = pool.worker_blocks(&[next]);
        let came_back = matches!(spare.join().unwrap(), Next::Idle);
        match blocking {
            Blocking::Wait => assert!(came_back),
            Blocking::StartThread => assert!(!came_back),
            Blocking::Help => panic!("a spare thread was available"),
        }
    });
}
