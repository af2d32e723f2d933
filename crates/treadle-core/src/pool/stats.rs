//! A thread pool's statistics (`ThreadPoolExecutor.stats()`), gathered where each fact is
//! known at no extra cost:
//!
//! - the pool counts submissions and times the wait in its queue under the mutex it holds
//!   anyway (a submission is stamped with the clock when its [`Sampler`] says so, and the wait
//!   is recorded when a worker takes it);
//! - each worker counts and times the tasks it runs in a record of its own ([`WorkerTimer`]),
//!   which only it writes, so that workers never contend on a counter;
//! - what happens off a worker (a task run by its submitter or by a worker waiting on its own
//!   pool, a time limit passing, the queue cancelled at shutdown) goes to shared atomics.
//!
//! A worker that ends hands its figures to the pool: its counts to the shared atomics, its times
//! to a histogram of ended workers, and a line to a list of the last [`ENDED_WORKERS_KEPT`].

use crate::primitive::{lock, Mutex};
use crate::stats::{
    add_single_writer, Histogram, Sampler, Snapshot, TaskEnd, WorkerSnapshot, ENDED_WORKERS_KEPT,
};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The figures of one worker thread, written by it alone (aligned so that two workers' records
/// never share a cache line).
#[derive(Debug)]
#[repr(align(128))]
struct WorkerRecord {
    name: String,
    born: Instant,
    tasks: AtomicU64,
    busy_ns: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    task_time: Histogram,
}

impl WorkerRecord {
    fn snapshot(&self, until: Instant, alive: bool) -> WorkerSnapshot {
        WorkerSnapshot {
            name: self.name.clone(),
            pid: None,
            tasks: self.tasks.load(Relaxed),
            busy: Duration::from_nanos(self.busy_ns.load(Relaxed)),
            lifetime: until.saturating_duration_since(self.born),
            alive,
        }
    }
}

#[derive(Debug, Default)]
struct Workers {
    live: Vec<Arc<WorkerRecord>>,
    ended: VecDeque<WorkerSnapshot>,
    ended_task_time: Histogram,
}

/// A thread pool's statistics. See the module documentation.
#[derive(Debug)]
pub struct PoolStats {
    enabled: bool,
    born: Instant,
    /// Written under the pool's mutex.
    submitted: AtomicU64,
    /// Submissions the submitter ran itself (`on_full="caller_runs"`), never queued.
    run_by_caller: AtomicU64,
    /// Written under the pool's mutex.
    queue_wait: Histogram,
    done: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    timed_out: AtomicU64,
    workers: Mutex<Workers>,
}

/// A worker thread's own side of the statistics: its record and its sampler.
#[derive(Debug)]
pub struct WorkerTimer {
    record: Arc<WorkerRecord>,
    sampler: Sampler,
}

/// When a timed task started, and how many tasks its time stands for.
pub type Timing = Option<(Instant, u32)>;

impl WorkerTimer {
    /// The worker is about to run a task: its start, if this one is timed.
    #[inline]
    pub fn task_starts(&mut self) -> Timing {
        let weight = self.sampler.due()?;
        let now = Instant::now();
        self.sampler.timed(now);
        Some((now, weight))
    }

    /// The task begun with `timing` ended so.
    #[inline]
    pub fn task_ends(&mut self, timing: Timing, end: TaskEnd) {
        let record = &*self.record;
        add_single_writer(&record.tasks, 1);
        if let Some((started, weight)) = timing {
            let took = started.elapsed();
            let busy = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            add_single_writer(&record.busy_ns, busy.saturating_mul(u64::from(weight)));
            if matches!(end, TaskEnd::Returned | TaskEnd::Raised) {
                record.task_time.record(took, weight);
            }
        }
        match end {
            TaskEnd::Returned => add_single_writer(&record.done, 1),
            TaskEnd::Raised => add_single_writer(&record.failed, 1),
            TaskEnd::Cancelled => add_single_writer(&record.cancelled, 1),
            TaskEnd::Ended => {}
        }
    }

    /// The worker took a task that had been cancelled in the queue, and skipped it.
    pub fn task_skipped(&mut self) {
        add_single_writer(&self.record.cancelled, 1);
    }
}

impl PoolStats {
    pub(super) fn new() -> PoolStats {
        PoolStats {
            enabled: crate::stats::enabled(),
            born: Instant::now(),
            submitted: AtomicU64::new(0),
            run_by_caller: AtomicU64::new(0),
            queue_wait: Histogram::default(),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            workers: Mutex::new(Workers::default()),
        }
    }

    /// Whether this pool gathers statistics (see [`crate::stats::set_enabled`]).
    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Under the pool's mutex: a task was queued.
    pub(super) fn submitted_locked(&self) {
        add_single_writer(&self.submitted, 1);
    }

    /// Under the pool's mutex: a task stamped at `queued` (standing for `weight`) was taken.
    pub(super) fn taken_locked(&self, queued: Instant, weight: u32) {
        self.queue_wait.record(queued.elapsed(), weight);
    }

    /// A worker thread named `name` starts: its side of the statistics (None when off).
    pub fn worker_started(&self, name: String) -> Option<WorkerTimer> {
        if !self.enabled {
            return None;
        }
        let record = Arc::new(WorkerRecord {
            name,
            born: Instant::now(),
            tasks: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            task_time: Histogram::default(),
        });
        lock(&self.workers).live.push(Arc::clone(&record));
        Some(WorkerTimer {
            record,
            sampler: Sampler::default(),
        })
    }

    /// A worker thread ends: its figures become the pool's.
    pub fn worker_ended(&self, timer: WorkerTimer) {
        let record = timer.record;
        let mut workers = lock(&self.workers);
        workers.live.retain(|live| !Arc::ptr_eq(live, &record));
        self.done.fetch_add(record.done.load(Relaxed), Relaxed);
        self.failed.fetch_add(record.failed.load(Relaxed), Relaxed);
        self.cancelled
            .fetch_add(record.cancelled.load(Relaxed), Relaxed);
        workers.ended_task_time.absorb(&record.task_time);
        if workers.ended.len() == ENDED_WORKERS_KEPT {
            workers.ended.pop_front();
        }
        workers
            .ended
            .push_back(record.snapshot(Instant::now(), false));
    }

    /// A task ended off a worker's loop (run by its submitter, or by a worker waiting on its
    /// own pool), or was cancelled in the queue.
    pub fn task_ended(&self, end: TaskEnd, count: u64) {
        if !self.enabled {
            return;
        }
        let counter = match end {
            TaskEnd::Returned => &self.done,
            TaskEnd::Raised => &self.failed,
            TaskEnd::Cancelled => &self.cancelled,
            TaskEnd::Ended => return,
        };
        counter.fetch_add(count, Relaxed);
    }

    /// A submission was run by its submitter, not queued (the queue was full).
    pub fn submission_run_by_caller(&self) {
        if self.enabled {
            self.run_by_caller.fetch_add(1, Relaxed);
        }
    }

    /// A task was stopped at its time limit.
    pub fn task_timed_out(&self) {
        if self.enabled {
            self.timed_out.fetch_add(1, Relaxed);
        }
    }

    /// The figures now; None when this pool gathers none.
    pub fn snapshot(&self) -> Option<Snapshot> {
        if !self.enabled {
            return None;
        }
        let now = Instant::now();
        let workers = lock(&self.workers);
        let live = &workers.live;
        let sum = |pool: &AtomicU64, of: fn(&WorkerRecord) -> &AtomicU64| {
            pool.load(Relaxed) + live.iter().map(|r| of(r).load(Relaxed)).sum::<u64>()
        };
        let times = live.iter().map(|r| &r.task_time);
        Some(Snapshot {
            submitted: self.submitted.load(Relaxed) + self.run_by_caller.load(Relaxed),
            done: sum(&self.done, |r| &r.done),
            failed: sum(&self.failed, |r| &r.failed),
            cancelled: sum(&self.cancelled, |r| &r.cancelled),
            timed_out: self.timed_out.load(Relaxed),
            task_time: Histogram::summarize(times.chain([&workers.ended_task_time])),
            queue_wait: Histogram::summarize([&self.queue_wait]),
            workers: live
                .iter()
                .map(|r| r.snapshot(now, true))
                .chain(workers.ended.iter().cloned())
                .collect(),
            restarts: None,
            uptime: now.saturating_duration_since(self.born),
        })
    }
}
