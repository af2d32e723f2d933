//! A process pool's statistics (`ProcessPoolExecutor.stats()`): counts, task times, queue
//! waits, each worker's work, and why workers were replaced.
//!
//! The state machine keeps them under the mutex it holds anyway, from the clock readings it
//! makes anyway (a submission's, a worker's answer's), so they cost no clock reading and no
//! atomic operation of their own, and every task is counted and timed: nothing is sampled. A
//! task's time runs from the moment it counts as started (see `state.rs`) to its answer; its wait
//! from its submission to that start, time spent on a worker that died before starting it
//! included. A pool made while statistics are off (`treadle_core::stats::set_enabled`) records
//! no times and has no snapshot, so that what gathering costs can be measured.

use std::collections::VecDeque;
use std::time::{Duration, Instant};
use treadle_core::stats::{Histogram, Restarts, Snapshot, WorkerSnapshot, ENDED_WORKERS_KEPT};

/// Why a worker ended and was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restart {
    /// It died by itself, never became ready, or its channel failed.
    Crashed,
    /// It was killed at its task's time limit.
    TimedOut,
    /// It was killed because its running task was cancelled.
    Interrupted,
    /// It ran its `max_tasks_per_child`.
    Recycled,
}

/// One worker's figures.
#[derive(Debug)]
pub(crate) struct WorkerTally {
    born: Instant,
    tasks: u64,
    busy: Duration,
}

impl WorkerTally {
    pub(crate) fn new(now: Instant) -> WorkerTally {
        WorkerTally {
            born: now,
            tasks: 0,
            busy: Duration::ZERO,
        }
    }

    fn snapshot(&self, pid: u32, until: Instant, alive: bool) -> WorkerSnapshot {
        WorkerSnapshot {
            name: format!("pid {pid}"),
            pid: Some(pid),
            tasks: self.tasks,
            busy: self.busy,
            lifetime: until.saturating_duration_since(self.born),
            alive,
        }
    }
}

/// A pool's figures. The counts are public to the state machine, which bumps them where each
/// thing happens.
#[derive(Debug)]
pub(crate) struct Tally {
    enabled: bool,
    born: Instant,
    pub(crate) submitted: u64,
    pub(crate) done: u64,
    pub(crate) failed: u64,
    pub(crate) cancelled: u64,
    pub(crate) timed_out: u64,
    task_time: Histogram,
    queue_wait: Histogram,
    restarts: Restarts,
    ended: VecDeque<WorkerSnapshot>,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            enabled: treadle_core::stats::enabled(),
            born: Instant::now(),
            submitted: 0,
            done: 0,
            failed: 0,
            cancelled: 0,
            timed_out: 0,
            task_time: Histogram::default(),
            queue_wait: Histogram::default(),
            restarts: Restarts::default(),
            ended: VecDeque::new(),
        }
    }

    /// A task queued at `queued` started at `now`.
    pub(crate) fn started(&mut self, queued: Instant, now: Instant) {
        if !self.enabled {
            return;
        }
        self.queue_wait
            .record(now.saturating_duration_since(queued), 1);
    }

    /// `worker` answered a task it ran for `took`.
    pub(crate) fn ran(&mut self, worker: &mut WorkerTally, took: Duration) {
        if !self.enabled {
            return;
        }
        worker.tasks += 1;
        worker.busy += took;
        self.task_time.record(took, 1);
    }

    /// Worker `pid` ended at `now`; `why` it is replaced, if it is.
    pub(crate) fn worker_ended(
        &mut self,
        worker: &WorkerTally,
        pid: u32,
        why: Option<Restart>,
        now: Instant,
    ) {
        if !self.enabled {
            return;
        }
        let restarts = &mut self.restarts;
        match why {
            Some(Restart::Crashed) => restarts.crashed += 1,
            Some(Restart::TimedOut) => restarts.timed_out += 1,
            Some(Restart::Interrupted) => restarts.interrupted += 1,
            Some(Restart::Recycled) => restarts.recycled += 1,
            None => {}
        }
        if self.ended.len() == ENDED_WORKERS_KEPT {
            self.ended.pop_front();
        }
        self.ended.push_back(worker.snapshot(pid, now, false));
    }

    /// The figures now, with the live workers' (`(figures, pid)`); None when off.
    pub(crate) fn snapshot<'a>(
        &self,
        live: impl Iterator<Item = (&'a WorkerTally, u32)>,
        now: Instant,
    ) -> Option<Snapshot> {
        if !self.enabled {
            return None;
        }
        Some(Snapshot {
            submitted: self.submitted,
            done: self.done,
            failed: self.failed,
            cancelled: self.cancelled,
            timed_out: self.timed_out,
            task_time: Histogram::summarize([&self.task_time]),
            queue_wait: Histogram::summarize([&self.queue_wait]),
            workers: live
                .map(|(worker, pid)| worker.snapshot(pid, now, true))
                .chain(self.ended.iter().cloned())
                .collect(),
            restarts: Some(self.restarts),
            uptime: now.saturating_duration_since(self.born),
        })
    }
}
