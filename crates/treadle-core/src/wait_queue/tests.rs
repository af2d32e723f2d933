use super::*;
use std::thread;
use std::time::Duration;

#[test]
fn notify_wakes_the_oldest_waiters_first() {
    let queue = WaitQueue::new();
    let first = queue.enqueue();
    let second = queue.enqueue();
    let third = queue.enqueue();
    assert_eq!(queue.notify(2), 2);
    assert!(first.is_notified());
    assert!(second.is_notified());
    assert!(!third.is_notified());
    assert_eq!(queue.len(), 1);
}

#[test]
fn notify_all_empties_the_queue() {
    let queue = WaitQueue::new();
    let waiters: Vec<_> = (0..5).map(|_| queue.enqueue()).collect();
    assert_eq!(queue.notify_all(), 5);
    assert!(waiters.iter().all(|w| w.is_notified()));
    assert!(queue.is_empty());
}

#[test]
fn withdraw_tells_whether_a_notification_was_spent() {
    let queue = WaitQueue::new();
    let waiter = queue.enqueue();
    assert!(queue.withdraw(&waiter));
    let waiter = queue.enqueue();
    queue.notify(1);
    assert!(!queue.withdraw(&waiter));
}

#[test]
fn waiter_times_out_without_notification() {
    let queue = WaitQueue::new();
    let waiter = queue.enqueue();
    let deadline = Instant::now() + Duration::from_millis(30);
    assert!(!waiter.wait_until(Some(deadline)));
    assert!(Instant::now() >= deadline);
}

#[test]
fn waiter_parked_in_another_thread_is_woken() {
    let queue = Arc::new(WaitQueue::new());
    let waiter = queue.enqueue();
    let parked = waiter.clone();
    let handle = thread::spawn(move || parked.wait_until(None));
    thread::sleep(Duration::from_millis(20));
    queue.notify(1);
    assert!(handle.join().unwrap());
}
