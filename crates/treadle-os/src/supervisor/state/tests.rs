//! The supervisor's rules with a fake link: no process, no socket.

use super::*;
use std::cell::RefCell;

#[derive(Debug, Default)]
struct FakeLink {
    pid: u32,
    /// (kind, task) of every frame queued.
    frames: Vec<(u8, u64)>,
    signals: RefCell<Vec<Signal>>,
}

impl Link for FakeLink {
    fn pid(&self) -> u32 {
        self.pid
    }
    fn queue(&mut self, bytes: Vec<u8>, _fds: Vec<OwnedFd>) {
        let header = Header::decode(&bytes).expect("a whole frame");
        self.frames.push((header.kind, header.task));
    }
    fn flush(&mut self) -> bool {
        false
    }
    fn signal(&self, signal: Signal) {
        self.signals.borrow_mut().push(signal);
    }
}

fn limits(workers: usize, prefetch: usize) -> Limits {
    Limits {
        workers,
        prefetch,
        max_tasks_per_child: None,
    }
}

fn task(id: u64, timeout: Option<Duration>) -> Task {
    Task {
        id,
        payload: b"payload".to_vec(),
        fds: Vec::new(),
        timeout,
    }
}

fn answer(kind: u8, task: u64) -> Header {
    Header {
        len: 0,
        kind,
        fds: 0,
        task,
    }
}

/// A state with one worker (pid 100) that said it is ready.
fn one_ready_worker(prefetch: usize, now: Instant) -> State<FakeLink> {
    let mut state = State::new(limits(1, prefetch));
    assert_eq!(state.missing_workers(), 1);
    let link = FakeLink {
        pid: 100,
        ..FakeLink::default()
    };
    state.workers.push(Worker::new(link, Some(0)));
    state.on_frame(
        0,
        answer(from_worker::READY, 0),
        Vec::new(),
        Vec::new(),
        now,
    );
    state
}

fn sent_tasks(state: &State<FakeLink>) -> Vec<u64> {
    state.workers[0]
        .link
        .frames
        .iter()
        .filter(|(kind, _)| *kind == to_worker::TASK)
        .map(|&(_, task)| task)
        .collect()
}

#[test]
fn a_worker_holds_at_most_prefetch_tasks_until_it_has_a_pace() {
    let now = Instant::now();
    let mut state = one_ready_worker(2, now);
    for id in 1..=3 {
        state.submit(task(id, None), now).unwrap();
    }
    assert_eq!(sent_tasks(&state), [1, 2]);
    assert!(state.is_queued(3));
    state.on_frame(
        0,
        answer(from_worker::RETURNED, 1),
        b"v".to_vec(),
        Vec::new(),
        now,
    );
    state.settle(now);
    assert_eq!(sent_tasks(&state), [1, 2, 3]);
    let events = state.take_events();
    assert!(matches!(events[..], [Event::Returned { id: 1, .. }]));
}

#[test]
fn a_deadline_counts_from_the_answer_to_the_task_before() {
    let start = Instant::now();
    let limit = Duration::from_secs(1);
    let mut state = one_ready_worker(2, start);
    state.submit(task(1, None), start).unwrap();
    state.submit(task(2, Some(limit)), start).unwrap();
    // Task 2 waits behind task 1 for 5 s: that time is not charged to it.
    let answered = start + Duration::from_secs(5);
    state.on_frame(
        0,
        answer(from_worker::RETURNED, 1),
        Vec::new(),
        Vec::new(),
        answered,
    );
    state.expire(answered + limit / 2);
    assert!(state
        .take_events()
        .iter()
        .all(|e| matches!(e, Event::Returned { .. })));
    assert_eq!(state.next_deadline(), Some(answered + limit));
    state.expire(answered + limit);
    let events = state.take_events();
    assert!(
        matches!(events[..], [Event::TimedOut { id: 2, pid: 100, timeout }] if timeout == limit),
        "{events:?}"
    );
    assert_eq!(state.workers[0].fate(), Fate::Killed);
    assert_eq!(*state.workers[0].link.signals.borrow(), [Signal::KILL]);
}

#[test]
fn a_crash_fails_the_running_task_and_requeues_the_others() {
    let now = Instant::now();
    let mut state = one_ready_worker(3, now);
    for id in 1..=3 {
        state.submit(task(id, None), now).unwrap();
    }
    state.worker_ended(0, Exit::Signal(Signal::KILL.as_raw()), || Some(1));
    let events = state.take_events();
    assert!(
        matches!(
            events[..],
            [Event::Crashed {
                id: 1,
                pid: 100,
                oom: true,
                ..
            }]
        ),
        "{events:?}"
    );
    assert!(state.is_queued(2) && state.is_queued(3));
    assert_eq!(state.missing_workers(), 1);
}

#[test]
fn cancelling_an_unstarted_held_task_skips_it_and_swallows_the_answer() {
    let now = Instant::now();
    let mut state = one_ready_worker(2, now);
    state.submit(task(1, None), now).unwrap();
    state.submit(task(2, None), now).unwrap();
    assert_eq!(state.cancel(2, false, now), CancelOutcome::Running);
    assert_eq!(state.cancel(2, true, now), CancelOutcome::Interrupted);
    assert!(state.workers[0]
        .link
        .frames
        .contains(&(to_worker::CANCEL, 2)));
    state.on_frame(
        0,
        answer(from_worker::SKIPPED, 2),
        Vec::new(),
        Vec::new(),
        now,
    );
    assert!(state.take_events().is_empty());
    assert_eq!(state.cancel(2, true, now), CancelOutcome::Unknown);
    assert_eq!(state.workers[0].fate(), Fate::Serving);
}

#[test]
fn cancelling_a_queued_task_drops_it() {
    let now = Instant::now();
    let mut state: State<FakeLink> = State::new(limits(1, 1));
    state.submit(task(7, None), now).unwrap();
    assert_eq!(state.cancel(7, false, now), CancelOutcome::Cancelled);
    assert!(!state.is_queued(7));
}

#[test]
fn shutdown_retires_idle_workers_and_closes_once_they_ended() {
    let now = Instant::now();
    let mut state = one_ready_worker(1, now);
    assert!(state.shutdown(false).is_empty());
    assert_eq!(state.submit(task(1, None), now), Err(SubmitError::ShutDown));
    state.settle(now);
    assert!(state.workers[0].link.frames.contains(&(to_worker::EXIT, 0)));
    assert!(state.take_events().is_empty());
    state.worker_ended(0, Exit::Code(0), || None);
    state.settle(now);
    assert!(matches!(state.take_events()[..], [Event::Closed]));
    state.settle(now);
    assert!(state.take_events().is_empty());
}

#[test]
fn workers_that_keep_failing_to_start_break_the_pool() {
    let now = Instant::now();
    let mut state: State<FakeLink> = State::new(limits(1, 1));
    state.submit(task(1, None), now).unwrap();
    state.start_failed("no such program");
    state.start_failed("no such program");
    assert!(state.broken().is_none());
    state.start_failed("no such program");
    let events = state.take_events();
    assert!(
        matches!(&events[..], [Event::Broken { id: 1, reason }] if reason.contains("3 in a row")),
        "{events:?}"
    );
    assert_eq!(state.missing_workers(), 0);
    assert!(matches!(
        state.submit(task(2, None), now),
        Err(SubmitError::Broken(_))
    ));
}

#[test]
fn the_tally_times_tasks_from_their_start_and_waits_from_their_submission() {
    let start = Instant::now();
    let mut state = one_ready_worker(2, start);
    state.submit(task(1, None), start).unwrap();
    state.submit(task(2, None), start).unwrap();
    // Task 1 runs 2 s; task 2, held meanwhile, starts then and runs 4 s.
    let first = start + Duration::from_secs(2);
    state.on_frame(
        0,
        answer(from_worker::RETURNED, 1),
        Vec::new(),
        Vec::new(),
        first,
    );
    let second = first + Duration::from_secs(4);
    state.on_frame(
        0,
        answer(from_worker::RAISED, 2),
        Vec::new(),
        Vec::new(),
        second,
    );
    let stats = state.stats(second).expect("stats are on");
    assert_eq!((stats.submitted, stats.done, stats.failed), (2, 1, 1));
    assert_eq!(stats.task_time.count, 2);
    assert_eq!(stats.task_time.mean, Duration::from_secs(3));
    assert_eq!(stats.task_time.max, Duration::from_secs(4));
    assert_eq!(stats.queue_wait.count, 2);
    assert_eq!(stats.queue_wait.max, Duration::from_secs(2));
    let [worker] = &stats.workers[..] else {
        panic!("{:?}", stats.workers)
    };
    assert_eq!(
        (worker.pid, worker.tasks, worker.alive),
        (Some(100), 2, true)
    );
    assert_eq!(worker.busy, Duration::from_secs(6));
}

#[test]
fn the_tally_counts_cancellations_timeouts_and_why_workers_were_replaced() {
    let now = Instant::now();
    let limit = Duration::from_secs(1);
    let mut state = one_ready_worker(1, now);
    state.submit(task(1, Some(limit)), now).unwrap();
    state.submit(task(2, None), now).unwrap();
    assert_eq!(state.cancel(2, false, now), CancelOutcome::Cancelled);
    state.expire(now + limit);
    state.worker_ended(0, Exit::Signal(Signal::KILL.as_raw()), || None);
    let stats = state.stats(now + limit).expect("stats are on");
    assert_eq!(
        (stats.submitted, stats.cancelled, stats.timed_out),
        (2, 1, 1)
    );
    assert_eq!(stats.task_time.count, 0);
    let restarts = stats.restarts.expect("a process pool's");
    assert_eq!((restarts.timed_out, restarts.crashed), (1, 0));
    assert!(stats.workers.iter().all(|w| !w.alive));
}

#[test]
fn a_crash_counts_as_a_failure_and_a_restart() {
    let now = Instant::now();
    let mut state = one_ready_worker(1, now);
    state.submit(task(1, None), now).unwrap();
    state.worker_ended(0, Exit::Code(1), || None);
    let stats = state.stats(now).expect("stats are on");
    assert_eq!(stats.failed, 1);
    assert_eq!(stats.restarts.map(|r| r.crashed), Some(1));
}
