use super::*;
use crate::future::{Outcome, Start};
use std::thread;
use std::time::Duration;

struct Plain;
impl TaskTypes for Plain {
    type Job = u32;
    type Value = u32;
    type Callback = ();
}

fn cell(job: u32) -> Arc<FutureCell<Plain>> {
    Arc::new(FutureCell::new(Some(job)))
}

#[test]
fn spawns_until_max_workers_then_queues() {
    let pool = Pool::<Plain>::new(2, 0);
    assert_eq!(pool.submit(&cell(1), None), Ok(true));
    assert_eq!(pool.submit(&cell(2), None), Ok(true));
    assert_eq!(pool.submit(&cell(3), None), Ok(false));
    assert_eq!(pool.workers(), 2);
    assert_eq!(pool.pending(), 3);
}

#[test]
fn a_parked_worker_is_used_before_spawning() {
    let pool = Arc::new(Pool::<Plain>::new(4, 0));
    assert_eq!(pool.submit(&cell(0), None), Ok(true));
    let Next::Run(_) = pool.next(None) else {
        panic!("expected work")
    };
    let worker = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || {
            pool.worker_idle();
            matches!(pool.next(None), Next::Run(_))
        })
    };
    while lock(&pool.state).parked_workers == 0 {
        thread::yield_now();
    }
    assert_eq!(pool.submit(&cell(1), None), Ok(false));
    assert!(worker.join().unwrap());
}

#[test]
fn a_worker_between_tasks_is_used_before_spawning_even_before_it_parks() {
    let pool = Pool::<Plain>::new(4, 0);
    assert_eq!(pool.submit(&cell(0), None), Ok(true));
    pool.worker_idle();
    let Next::Run(_) = pool.next(None) else {
        panic!("expected work")
    };
    // The task is done; the worker says so but has not come back to `next` yet.
    pool.worker_idle();
    assert_eq!(pool.submit(&cell(1), None), Ok(false));
    assert_eq!(pool.workers(), 1);
}

#[test]
fn bounded_pool_refuses_at_the_deadline() {
    let pool = Pool::<Plain>::new(1, 1);
    pool.submit(&cell(1), None).unwrap();
    let refused = pool.submit(&cell(2), Some(Instant::now() + Duration::from_millis(5)));
    assert_eq!(refused, Err(SubmitError::Full));
}

#[test]
fn blocked_submitter_gets_room_when_a_worker_takes_work() {
    let pool = Arc::new(Pool::<Plain>::new(1, 1));
    pool.submit(&cell(1), None).unwrap();
    let submitter = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || pool.submit(&cell(2), None))
    };
    thread::sleep(Duration::from_millis(20));
    assert!(matches!(pool.next(None), Next::Run(_)));
    assert!(submitter.join().unwrap().is_ok());
}

#[test]
fn shutdown_drains_or_returns_the_queue() {
    let pool = Pool::<Plain>::new(1, 0);
    pool.submit(&cell(1), None).unwrap();
    assert!(pool.shutdown(false).is_empty());
    assert_eq!(pool.submit(&cell(2), None), Err(SubmitError::ShutDown));
    assert!(matches!(pool.next(None), Next::Run(_)));
    assert!(matches!(pool.next(None), Next::Exit));

    let pool = Pool::<Plain>::new(1, 0);
    pool.submit(&cell(1), None).unwrap();
    assert_eq!(pool.shutdown(true).len(), 1);
    assert!(matches!(pool.next(None), Next::Exit));
}

#[test]
fn expired_returns_running_futures_past_their_deadline() {
    let pool = Pool::<Plain>::new(1, 0);
    let late = cell(1);
    assert!(matches!(late.start(), Start::Started(Some(1))));
    let done = cell(2);
    done.finish(Outcome::Returned(0)).unwrap();
    assert!(pool.add_deadline(Instant::now(), &late));
    assert!(!pool.add_deadline(Instant::now(), &done));
    let due = pool.expired(None).unwrap();
    assert_eq!(due.len(), 1);
    assert!(Arc::ptr_eq(&due[0], &late));
    pool.close_timers();
    assert!(pool.expired(None).is_none());
}

#[test]
fn a_bounded_pool_has_room_for_a_blocked_submission_once_a_worker_takes_work() {
    use crate::wait_graph::WaitTarget;
    let pool = Pool::<Plain>::new(1, 1);
    pool.submit(&cell(1), None).unwrap();
    assert!(!pool.is_ready(WAITING_FOR_ROOM));
    assert!(matches!(pool.next(None), Next::Run(_)));
    assert!(pool.is_ready(WAITING_FOR_ROOM));
    pool.submit(&cell(2), None).unwrap();
    assert!(!pool.is_ready(WAITING_FOR_ROOM));
    drop(pool.shutdown(false));
    assert!(pool.is_ready(WAITING_FOR_ROOM));
}
