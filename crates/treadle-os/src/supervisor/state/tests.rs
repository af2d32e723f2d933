//! The supervisor's rules with a fake link: no process, no socket.

use super::*;
use crate::OutOfBand;
use std::cell::RefCell;

#[derive(Debug, Default)]
struct FakeLink {
    pid: u32,
    /// (kind, task, descriptors) of every frame queued.
    frames: Vec<(u8, u64, usize)>,
    /// The tasks queued since the last flush.
    unflushed: Vec<u64>,
    /// The error the next flush fails with.
    fail_next: Option<io::ErrorKind>,
    signals: RefCell<Vec<Signal>>,
}

impl Link for FakeLink {
    fn pid(&self) -> u32 {
        self.pid
    }
    fn queue(&mut self, bytes: Vec<u8>, fds: Vec<OwnedFd>, task: Option<u64>) {
        let header = Header::decode(&bytes).expect("a whole frame");
        assert_eq!(header.fds as usize, fds.len());
        self.frames.push((header.kind, header.task, fds.len()));
        self.unflushed.extend(task);
    }
    fn flush(&mut self) -> Result<bool, SendFailure> {
        let tasks = std::mem::take(&mut self.unflushed);
        match self.fail_next.take() {
            Some(kind) => Err(SendFailure {
                error: kind.into(),
                tasks,
            }),
            None => Ok(false),
        }
    }
    fn signal(&self, signal: Signal) {
        self.signals.borrow_mut().push(signal);
    }
}

/// Lent bytes, as the binding lends a Python buffer.
struct Lent(Vec<u8>);

impl OutOfBand for Lent {
    fn bytes(&self) -> &[u8] {
        &self.0
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
        buffers: Buffers::None,
        timeout,
    }
}

fn task_with_buffers(id: u64) -> Task {
    let lent: Vec<Box<dyn OutOfBand>> =
        vec![Box::new(Lent(vec![7; 10])), Box::new(Lent(vec![8; 3]))];
    Task {
        buffers: Buffers::Lent(lent.into()),
        ..task(id, None)
    }
}

/// Packs what `to_pack` asks for, as the poller does.
fn pack(state: &mut State<FakeLink>, now: Instant) -> Vec<u64> {
    let mut ids = Vec::new();
    for (id, buffers) in state.to_pack() {
        let bytes: Vec<&[u8]> = buffers.iter().map(|b| b.bytes()).collect();
        state.packed(id, crate::segment::pack(&bytes));
        ids.push(id);
    }
    state.dispatch(now);
    ids
}

/// Worker 0 answers tasks `ids` with `RETURNED`, each followed by the poller's turn.
fn returned(state: &mut State<FakeLink>, now: Instant, ids: std::ops::RangeInclusive<u64>) {
    for id in ids {
        let frame = answer(from_worker::RETURNED, id);
        state.on_frame(0, frame, Vec::new(), Vec::new(), now);
        state.settle(now);
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
    assert_eq!(state.missing_workers(now), 1);
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
        .filter(|(kind, _, _)| *kind == to_worker::TASK)
        .map(|&(_, task, _)| task)
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
    state.worker_ended(0, Exit::Signal(Signal::KILL.as_raw()), || Some(1), now);
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
    assert_eq!(state.missing_workers(now), 1);
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
        .contains(&(to_worker::CANCEL, 2, 0)));
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

/// A cancelled task the worker may have started before it read the `CANCEL`: once the worker
/// is known to have reached it, it is stopped unless it is skipped within `SKIP_GRACE`.
fn assert_stopped_unless_skipped(mut state: State<FakeLink>, reached: Instant) {
    assert_eq!(state.workers[0].fate(), Fate::Serving);
    assert_eq!(state.next_deadline(), Some(reached + SKIP_GRACE));
    state.expire(reached + SKIP_GRACE);
    assert_eq!(state.workers[0].fate(), Fate::Killed);
    assert_eq!(*state.workers[0].link.signals.borrow(), [Signal::KILL]);
    assert!(
        state.take_events().is_empty(),
        "its future is cancelled already"
    );
    state.worker_ended(0, Exit::Signal(Signal::KILL.as_raw()), || None, reached);
    let stats = state.stats(reached).expect("stats are on");
    assert_eq!(stats.restarts.map(|r| r.interrupted), Some(1));
    assert_eq!(state.missing_workers(reached), 1, "replaced");
}

#[test]
fn a_task_interrupted_before_its_worker_is_known_ready_is_stopped_if_it_runs() {
    let now = Instant::now();
    let mut state = one_starting_worker(now);
    assert_eq!(state.cancel(1, true, now), CancelOutcome::Interrupted);
    assert_eq!(
        state.workers[0].fate(),
        Fate::Serving,
        "it may not have started"
    );
    // The worker said it was ready before it read the CANCEL, and runs the task.
    let ready = now + Duration::from_millis(3);
    state.on_frame(
        0,
        answer(from_worker::READY, 0),
        Vec::new(),
        Vec::new(),
        ready,
    );
    assert_stopped_unless_skipped(state, ready);
}

#[test]
fn a_task_interrupted_as_its_worker_answers_the_one_before_is_stopped_if_it_runs() {
    let now = Instant::now();
    let mut state = one_ready_worker(2, now);
    state.submit(task(1, None), now).unwrap();
    state.submit(task(2, None), now).unwrap();
    // The worker answered task 1 and started task 2; the answer is not read yet.
    assert_eq!(state.cancel(2, true, now), CancelOutcome::Interrupted);
    let answered = now + Duration::from_millis(3);
    state.on_frame(
        0,
        answer(from_worker::RETURNED, 1),
        Vec::new(),
        Vec::new(),
        answered,
    );
    assert_eq!(state.take_events().len(), 1);
    assert_stopped_unless_skipped(state, answered);
}

#[test]
fn an_interrupted_task_the_worker_skips_in_time_costs_no_worker() {
    let now = Instant::now();
    let mut state = one_starting_worker(now);
    state.cancel(1, true, now);
    state.on_frame(
        0,
        answer(from_worker::READY, 0),
        Vec::new(),
        Vec::new(),
        now,
    );
    state.on_frame(
        0,
        answer(from_worker::SKIPPED, 1),
        Vec::new(),
        Vec::new(),
        now,
    );
    assert_eq!(state.next_deadline(), None);
    state.expire(now + SKIP_GRACE);
    assert_eq!(state.workers[0].fate(), Fate::Serving);
    assert!(state.workers[0].link.signals.borrow().is_empty());
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
    assert!(state.workers[0]
        .link
        .frames
        .contains(&(to_worker::EXIT, 0, 0)));
    assert!(state.take_events().is_empty());
    state.worker_ended(0, Exit::Code(0), || None, now);
    state.settle(now);
    assert!(matches!(state.take_events()[..], [Event::Closed]));
    state.settle(now);
    assert!(state.take_events().is_empty());
}

#[test]
fn workers_that_keep_failing_to_start_break_the_pool_after_waiting_longer_each_time() {
    let now = Instant::now();
    let mut state: State<FakeLink> = State::new(limits(1, 1));
    state.submit(task(1, None), now).unwrap();
    state.start_failed("no such program", now);
    // The next start waits, and the poller is woken for it.
    assert_eq!(state.missing_workers(now), 0);
    assert_eq!(state.next_deadline(), Some(now + START_BACKOFF));
    let later = now + START_BACKOFF;
    assert_eq!(state.missing_workers(later), 1);
    state.start_failed("no such program", later);
    assert_eq!(state.next_deadline(), Some(later + 2 * START_BACKOFF));
    assert!(state.broken().is_none());
    state.start_failed("no such program", later + 2 * START_BACKOFF);
    let events = state.take_events();
    assert!(
        matches!(&events[..], [Event::Broken { id: 1, reason }] if reason.contains("3 in a row")),
        "{events:?}"
    );
    assert_eq!(state.missing_workers(later + Duration::from_secs(60)), 0);
    assert!(matches!(
        state.submit(task(2, None), now),
        Err(SubmitError::Broken(_))
    ));
}

/// A state with one worker (pid 100) that has not said it is ready, holding task 1.
fn one_starting_worker(now: Instant) -> State<FakeLink> {
    let mut state = State::new(limits(1, 2));
    state.workers.push(Worker::new(
        FakeLink {
            pid: 100,
            ..FakeLink::default()
        },
        None,
    ));
    state.submit(task(1, None), now).unwrap();
    state
}

#[test]
fn a_worker_killed_from_outside_before_it_is_ready_is_no_start_failure() {
    let now = Instant::now();
    for _ in 0..START_FAILURES_TO_BREAK * 3 {
        let mut state = one_starting_worker(now);
        state.worker_ended(0, Exit::Signal(Signal::KILL.as_raw()), || None, now);
        assert!(state.broken().is_none());
        assert!(state.take_events().is_empty(), "its task is not lost");
        assert!(state.is_queued(1));
        assert_eq!(state.missing_workers(now), 1, "replaced at once");
    }
    let mut state = one_starting_worker(now);
    for _ in 0..START_FAILURES_TO_BREAK * 3 {
        state.worker_ended(0, Exit::Signal(Signal::TERM.as_raw()), || None, now);
        state.workers.push(Worker::new(FakeLink::default(), None));
    }
    assert!(state.broken().is_none());
}

#[test]
fn a_worker_that_exits_or_crashes_before_it_is_ready_failed_to_start() {
    let now = Instant::now();
    for exit in [Exit::Code(1), Exit::Signal(Signal::SEGV.as_raw())] {
        let mut state = one_starting_worker(now);
        state.worker_ended(0, exit, || None, now);
        assert!(state.is_queued(1));
        assert_eq!(state.missing_workers(now), 0, "the next start waits");
        assert_eq!(state.missing_workers(now + START_BACKOFF), 1);
    }
}

#[test]
fn lent_buffers_are_packed_only_for_a_worker_with_room_and_sent_as_one_segment() {
    let now = Instant::now();
    let mut state = one_ready_worker(2, now);
    for id in 1..=5 {
        state.submit(task_with_buffers(id), now).unwrap();
    }
    assert!(sent_tasks(&state).is_empty(), "lent buffers are never sent");
    // What the worker has room for, and one more, packed ahead.
    assert_eq!(pack(&mut state, now), [1, 2, 3]);
    assert_eq!(sent_tasks(&state), [1, 2]);
    let frames = &state.workers[0].link.frames;
    assert!(frames.iter().all(|&(_, _, fds)| fds == 1));
    // The rest of the queue holds no segment: nothing more is packed until the worker has room.
    assert!(pack(&mut state, now).is_empty());
    assert!(state
        .pending
        .iter()
        .skip(1)
        .all(|queued| matches!(queued.task.buffers, Buffers::Lent(_))));
    // An answer sends the task packed ahead at once.
    state.on_frame(
        0,
        answer(from_worker::RETURNED, 1),
        Vec::new(),
        Vec::new(),
        now,
    );
    state.settle(now);
    assert_eq!(sent_tasks(&state), [1, 2, 3]);
    assert_eq!(pack(&mut state, now), [4]);
}

#[test]
fn a_plain_task_waiting_for_a_busy_worker_needs_no_poller_but_a_timed_or_lent_one_does() {
    let now = Instant::now();
    let mut state = one_ready_worker(1, now);
    assert_eq!(state.submit(task(1, None), now), Ok(false), "sent at once");
    assert_eq!(
        state.submit(task(2, None), now),
        Ok(false),
        "sent when 1 is answered"
    );
    let timed = task(3, Some(Duration::from_secs(1)));
    assert_eq!(state.submit(timed, now), Ok(true));
    assert_eq!(state.submit(task_with_buffers(4), now), Ok(true));
    assert_eq!(sent_tasks(&state), [1]);
    let frame = answer(from_worker::RETURNED, 1);
    state.on_frame(0, frame, Vec::new(), Vec::new(), now);
    state.settle(now);
    // Now with a pace, the worker takes more: up to the task whose buffers wait to be packed.
    assert_eq!(sent_tasks(&state), [1, 2, 3]);
}

#[test]
fn a_worker_holding_many_short_tasks_is_refilled_at_half_its_capacity_in_one_go() {
    let now = Instant::now();
    let mut state = one_ready_worker(2, now);
    state.submit(task(1, None), now).unwrap();
    returned(&mut state, now, 1..=1); // a pace: its tasks are short, it may hold MAX_HELD
    let half = MAX_HELD / 2;
    for id in 2..=200 {
        state.submit(task(id, None), now).unwrap();
    }
    // A submission writes a task only to a worker short of its next one: the rest wait.
    assert_eq!(state.workers[0].sent.len(), 2);
    let written = sent_tasks(&state).len();
    // Its answer finds it below half its capacity: it is filled up in one go.
    returned(&mut state, now, 2..=2);
    assert_eq!(state.workers[0].sent.len(), MAX_HELD);
    assert_eq!(sent_tasks(&state).len(), written + MAX_HELD - 1);
    // Answers while it holds more than half write nothing more to it, nor do submissions.
    returned(&mut state, now, 3..=(2 + half as u64 - 1));
    assert_eq!(state.workers[0].sent.len(), half + 1);
    state.submit(task(201, None), now).unwrap();
    assert_eq!(sent_tasks(&state).len(), written + MAX_HELD - 1);
}

#[test]
fn only_the_head_of_a_long_queue_is_looked_at_for_buffers_to_pack() {
    let now = Instant::now();
    let mut state = one_ready_worker(2, now);
    for id in 1..=1000 {
        state.submit(task(id, None), now).unwrap();
    }
    state.submit(task_with_buffers(1001), now).unwrap();
    // Far behind what the worker could take before the poller looks again: not yet.
    assert!(state.to_pack().is_empty());
    // Once the tasks before it are answered, it is packed ahead of its turn.
    returned(&mut state, now, 1..=999);
    assert_eq!(pack(&mut state, now), [1001]);
    returned(&mut state, now, 1000..=1001);
    assert!(state.pending.is_empty());
}

#[test]
fn a_task_behind_one_being_packed_waits_its_turn() {
    let now = Instant::now();
    let mut state = one_ready_worker(4, now);
    state.submit(task_with_buffers(1), now).unwrap();
    state.submit(task(2, None), now).unwrap();
    assert!(sent_tasks(&state).is_empty());
    pack(&mut state, now);
    assert_eq!(sent_tasks(&state), [1, 2]);
}

#[test]
fn a_task_whose_buffers_cannot_be_packed_fails_alone() {
    let now = Instant::now();
    let mut state = one_ready_worker(2, now);
    state.submit(task_with_buffers(1), now).unwrap();
    state.submit(task(2, None), now).unwrap();
    state.packed(1, Err(io::Error::from_raw_os_error(24)));
    state.dispatch(now);
    let events = state.take_events();
    assert!(
        matches!(&events[..], [Event::Failed { id: 1, errno: Some(24), reason }] if reason.contains("shared memory")),
        "{events:?}"
    );
    assert_eq!(sent_tasks(&state), [2]);
}

#[test]
fn a_failed_write_fails_its_tasks_and_the_running_one_and_replaces_the_worker() {
    let now = Instant::now();
    let mut state = one_ready_worker(4, now);
    state.submit(task(1, None), now).unwrap();
    state.workers[0].link.fail_next = Some(io::ErrorKind::OutOfMemory);
    state.submit(task(2, None), now).unwrap();
    let events = state.take_events();
    let failed: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Failed { id, reason, .. } if reason.contains("channel") => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(failed, [1, 2], "{events:?}");
    assert_eq!(state.workers[0].fate(), Fate::Killed);
    assert_eq!(*state.workers[0].link.signals.borrow(), [Signal::KILL]);
    assert_eq!(state.missing_workers(now), 1);
}

#[test]
fn a_write_to_a_worker_that_hung_up_requeues_what_it_never_received() {
    let now = Instant::now();
    let mut state = one_ready_worker(4, now);
    state.submit(task(1, None), now).unwrap();
    state.workers[0].link.fail_next = Some(io::ErrorKind::BrokenPipe);
    state.submit(task(2, None), now).unwrap();
    assert!(state.take_events().is_empty());
    assert!(state.is_queued(2));
    // It takes nothing more; its end says what became of the task it was running.
    state.dispatch(now);
    assert!(state.is_queued(2));
    state.worker_ended(0, Exit::Signal(Signal::KILL.as_raw()), || None, now);
    let events = state.take_events();
    assert!(
        matches!(events[..], [Event::Crashed { id: 1, .. }]),
        "{events:?}"
    );
    assert!(state.is_queued(2));
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
    state.worker_ended(0, Exit::Signal(Signal::KILL.as_raw()), || None, now);
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
    state.worker_ended(0, Exit::Code(1), || None, now);
    let stats = state.stats(now).expect("stats are on");
    assert_eq!(stats.failed, 1);
    assert_eq!(stats.restarts.map(|r| r.crashed), Some(1));
}

#[test]
fn the_tally_counts_tasks_failed_by_packing_or_a_write_and_the_worker_replaced() {
    let now = Instant::now();
    let mut state = one_ready_worker(4, now);
    state.submit(task_with_buffers(1), now).unwrap();
    state.packed(1, Err(io::Error::from_raw_os_error(24)));
    state.submit(task(2, None), now).unwrap();
    state.workers[0].link.fail_next = Some(io::ErrorKind::OutOfMemory);
    state.submit(task(3, None), now).unwrap();
    state.worker_ended(0, Exit::Signal(Signal::KILL.as_raw()), || None, now);
    let stats = state.stats(now).expect("stats are on");
    assert_eq!((stats.submitted, stats.failed), (3, 3));
    assert_eq!(stats.restarts.map(|r| r.crashed), Some(1));
}

#[test]
fn answers_are_let_gather_only_while_a_worker_holds_a_run_of_short_tasks() {
    let now = Instant::now();
    let within = Duration::from_micros(40);
    let mut state = one_ready_worker(2, now);
    state.submit(task(1, None), now).unwrap();
    // One task held, and no pace yet: its answer is read as soon as it comes.
    assert!(!state.answers_follow_within(within));
    returned(&mut state, now, 1..=1); // answered at once: a short pace
    state.submit(task(2, None), now).unwrap();
    assert!(!state.answers_follow_within(within)); // one task: nothing follows it
    state.submit(task(3, None), now).unwrap();
    assert!(state.answers_follow_within(within));
    // Tasks that each take longer than the wait are read one by one.
    assert!(!state.answers_follow_within(Duration::ZERO));
}

#[test]
fn a_waiter_takes_plain_returns_out_and_leaves_every_other_answer_for_the_poller() {
    let now = Instant::now();
    let mut state = one_ready_worker(6, now);
    for id in 1..=5 {
        state.submit(task(id, None), now).unwrap();
    }
    // The worker holds 1-4 (past half its capacity, a submission sends it no more); 5 waits.
    assert_eq!(state.holder_of(1), Some(0));
    assert_eq!(state.holder_of(5), None);
    assert!(state.has_pending());
    state.on_frame(
        0,
        answer(from_worker::RETURNED, 1),
        b"a".to_vec(),
        Vec::new(),
        now,
    );
    state.on_frame(
        0,
        answer(from_worker::RAISED, 2),
        b"b".to_vec(),
        Vec::new(),
        now,
    );
    let (segment, _) = std::os::unix::net::UnixStream::pair().unwrap();
    let with_segment = Header {
        fds: 1,
        ..answer(from_worker::RETURNED, 3)
    };
    state.on_frame(
        0,
        with_segment,
        Vec::new(),
        vec![OwnedFd::from(segment)],
        now,
    );
    state.on_frame(
        0,
        answer(from_worker::RETURNED, 4),
        b"d".to_vec(),
        Vec::new(),
        now,
    );
    let plain = state.take_plain_returns();
    let ids: Vec<u64> = plain
        .iter()
        .map(|event| match event {
            Event::Returned { id, .. } => *id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, [1, 4]);
    assert!(state.has_events());
    state.give_back(plain);
    let left: Vec<String> = state
        .take_events()
        .iter()
        .map(|event| match event {
            Event::Raised { id, .. } => format!("raised {id}"),
            Event::Returned { id, fds, .. } => format!("returned {id} with {}", fds.len()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        left,
        [
            "raised 2",
            "returned 3 with 1",
            "returned 1 with 0",
            "returned 4 with 0"
        ]
    );
    assert_eq!(state.holder_of(1), None);
    // The answers made room: 5 goes out at the next turn.
    state.settle(now);
    assert_eq!(state.holder_of(5), Some(0));
    assert!(!state.has_pending());
}
