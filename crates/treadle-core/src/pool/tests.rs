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
fn a_blocked_worker_moves_what_it_waits_for_first_and_gets_a_spare_thread() {
    let pool = Pool::<Plain>::new(1, 0);
    let (older, waited) = (cell(1), cell(2));
    assert_eq!(pool.submit(&cell(0), None), Ok(true));
    let Next::Run(_) = pool.next(None) else {
        panic!("expected work")
    };
    pool.submit(&older, None).unwrap();
    pool.submit(&waited, None).unwrap();
    assert_eq!(
        pool.worker_blocks(&[Arc::clone(&waited)]),
        Blocking::StartThread
    );
    assert_eq!(pool.workers(), 2);
    let Next::Run(first) = pool.next(None) else {
        panic!("expected work")
    };
    assert!(Arc::ptr_eq(&first, &waited));
    pool.worker_unblocks();
    assert_eq!(pool.blocked_workers(), 0);
}

#[test]
fn a_blocked_worker_waits_when_an_idle_worker_will_take_its_futures() {
    let pool = Pool::<Plain>::new(2, 0);
    let waited = cell(1);
    pool.submit(&cell(0), None).unwrap();
    pool.worker_idle();
    let Next::Run(_) = pool.next(None) else {
        panic!("expected work")
    };
    pool.worker_idle(); // a second worker, between tasks
    pool.submit(&waited, None).unwrap();
    assert_eq!(pool.worker_blocks(&[waited]), Blocking::Wait);
    assert_eq!(pool.workers(), 1);
}

#[test]
fn a_worker_waiting_on_running_futures_counts_as_blocked_but_needs_no_thread_yet() {
    let pool = Pool::<Plain>::new(1, 0);
    let running = cell(1);
    pool.submit(&running, None).unwrap();
    let Next::Run(_) = pool.next(None) else {
        panic!("expected work")
    };
    assert_eq!(pool.worker_blocks(&[running]), Blocking::Wait);
    // It takes no work while it waits: a submission gets a thread of its own.
    assert_eq!(pool.blocked_workers(), 1);
    assert_eq!(pool.submit(&cell(2), None), Ok(true));
}

#[test]
fn several_waited_futures_go_first_in_their_order() {
    let pool = Pool::<Plain>::new(1, 0);
    let cells: Vec<_> = (0..5).map(cell).collect();
    for cell in &cells {
        pool.submit(cell, None).unwrap();
    }
    let waited = [Arc::clone(&cells[4]), Arc::clone(&cells[2])];
    assert_eq!(pool.worker_blocks(&waited), Blocking::StartThread);
    let order: Vec<_> = (0..5)
        .map(|_| match pool.next(Some(Instant::now())) {
            Next::Run(cell) => cells.iter().position(|c| Arc::ptr_eq(c, &cell)).unwrap(),
            _ => panic!("expected work"),
        })
        .collect();
    assert_eq!(order, [4, 2, 0, 1, 3]);
}

#[test]
fn past_the_spare_threads_a_blocked_worker_is_told_to_help() {
    let pool = Arc::new(Pool::<Plain>::new(1, 0));
    pool.submit(&cell(0), None).unwrap();
    for _ in 0..MAX_SPARE_WORKERS {
        let pool = Arc::clone(&pool);
        let blocked = thread::spawn(move || {
            let waited = cell(1);
            pool.submit(&waited, None).unwrap();
            pool.worker_blocks(&[waited])
        });
        assert_eq!(blocked.join().unwrap(), Blocking::StartThread);
    }
    let waited = cell(1);
    pool.submit(&waited, None).unwrap();
    assert_eq!(pool.worker_blocks(&[waited]), Blocking::Help);
    assert_eq!(pool.workers(), 1 + MAX_SPARE_WORKERS);
}

#[test]
fn a_blocked_worker_counts_only_until_what_it_waits_for_is_done() {
    let pool = Pool::<Plain>::new(1, 0);
    let waited = cell(1);
    pool.submit(&waited, None).unwrap();
    assert_eq!(
        pool.worker_blocks(&[Arc::clone(&waited)]),
        Blocking::StartThread
    );
    assert_eq!(pool.blocked_workers(), 1);
    assert!(matches!(waited.start(), Start::Started(Some(1))));
    waited.finish(Outcome::Returned(1)).unwrap();
    // Done, though the waiting worker has not woken yet: a submission gets no new thread.
    assert_eq!(pool.blocked_workers(), 0);
    assert_eq!(pool.submit(&cell(2), None), Ok(false));
    pool.worker_unblocks();
}

/// A pool of one, whose worker blocked on a queued future and got a second thread, which ran it:
/// the worker has woken, so the pool has a thread too many.
fn pool_with_a_thread_too_many() -> Pool<Plain> {
    let pool = Pool::<Plain>::new(1, 0);
    let waited = cell(1);
    pool.submit(&cell(0), None).unwrap();
    let Next::Run(_) = pool.next(None) else {
        panic!("expected work")
    };
    pool.submit(&waited, None).unwrap();
    assert_eq!(pool.worker_blocks(&[waited]), Blocking::StartThread);
    pool.worker_idle();
    assert!(matches!(pool.next(None), Next::Run(_)));
    pool.worker_idle();
    pool.worker_unblocks();
    pool
}

#[test]
fn a_thread_too_many_stands_aside_and_retires_when_not_needed() {
    let pool = pool_with_a_thread_too_many();
    pool.submit(&cell(2), None).unwrap();
    // It leaves the queued work to the others.
    assert!(matches!(pool.next(None), Next::Spare));
    assert_eq!(pool.pending(), 1);
    let begin = Instant::now();
    assert!(matches!(pool.wait_as_spare(), Next::Retire));
    assert!(begin.elapsed() >= SPARE_KEEP_ALIVE);
    assert_eq!(pool.workers(), 1);
}

#[test]
fn a_spare_comes_back_for_the_next_worker_that_blocks() {
    let pool = Arc::new(pool_with_a_thread_too_many());
    assert!(matches!(pool.next(None), Next::Spare));
    let spare = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || matches!(pool.wait_as_spare(), Next::Idle))
    };
    let waited = cell(3);
    pool.submit(&waited, None).unwrap();
    assert_eq!(pool.worker_blocks(&[Arc::clone(&waited)]), Blocking::Wait);
    assert!(spare.join().unwrap());
    let Next::Run(taken) = pool.next(None) else {
        panic!("expected work")
    };
    assert!(Arc::ptr_eq(&taken, &waited));
    assert_eq!(pool.workers(), 2);
}

#[test]
fn shutdown_releases_a_spare() {
    let pool = pool_with_a_thread_too_many();
    assert!(matches!(pool.next(None), Next::Spare));
    drop(pool.shutdown(false));
    assert!(matches!(pool.wait_as_spare(), Next::Exit));
}

#[test]
fn a_submission_may_start_a_thread_for_a_blocked_worker() {
    let pool = Pool::<Plain>::new(1, 0);
    pool.submit(&cell(0), None).unwrap();
    let Next::Run(_) = pool.next(None) else {
        panic!("expected work")
    };
    let waited = cell(1);
    pool.submit(&waited, None).unwrap();
    // An idle worker is about to take it (counted idle, not parked yet).
    pool.worker_idle();
    assert_eq!(pool.worker_blocks(&[waited]), Blocking::Wait);
    assert_eq!(pool.submit(&cell(2), None), Ok(true));
    assert_eq!(pool.submit(&cell(3), None), Ok(false));
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

#[test]
fn the_pool_counts_submissions_and_times_waits_and_its_workers_their_tasks() {
    use crate::stats::TaskEnd;
    let pool = Pool::<Plain>::new(1, 0);
    let mut timer = pool
        .stats()
        .worker_started("w".into())
        .expect("stats are on");
    for job in 0..3 {
        pool.submit(&cell(job), None).unwrap();
    }
    thread::sleep(Duration::from_millis(20));
    for end in [TaskEnd::Returned, TaskEnd::Raised] {
        let Next::Run(cell) = pool.next(None) else {
            panic!("expected work")
        };
        let Start::Started(_) = cell.start() else {
            panic!("pending")
        };
        let timing = timer.task_starts();
        thread::sleep(Duration::from_millis(10));
        timer.task_ends(timing, end);
    }
    let Next::Run(_) = pool.next(None) else {
        panic!("expected work")
    };
    timer.task_skipped();
    let stats = pool.stats().snapshot().expect("stats are on");
    assert_eq!(stats.submitted, 3);
    assert_eq!((stats.done, stats.failed, stats.cancelled), (1, 1, 1));
    assert_eq!(stats.queue_wait.count, 3);
    assert!(stats.queue_wait.max >= Duration::from_millis(20));
    assert_eq!(stats.task_time.count, 2);
    assert!(stats.task_time.p50 >= Duration::from_millis(9));
    assert_eq!(stats.workers.len(), 1);
    assert_eq!((stats.workers[0].tasks, stats.workers[0].alive), (2, true));
    pool.stats().worker_ended(timer);
    let ended = pool.stats().snapshot().expect("stats are on");
    assert_eq!((ended.done, ended.failed, ended.cancelled), (1, 1, 1));
    assert_eq!(ended.task_time, stats.task_time);
    assert!(!ended.workers[0].alive);
}
