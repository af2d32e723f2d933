//! What a pool's statistics are made of, cheap enough to stay on: counters, log-linear
//! histograms of durations, and a sampler that times one event in several when events come
//! faster than a clock can be read for free.
//!
//! # Histograms
//!
//! [`Histogram`] buckets nanoseconds as HDR histograms do, log-linear: exact below 8 ns, then each
//! power of two cut into 8 equal buckets, so a bucket is at most 1/8 of its lower bound wide and a
//! percentile read as a bucket's midpoint is within about 6% of the true value; the count, the
//! sum (hence the mean) and the maximum are exact. 368 buckets cover up to 2^48 ns (78 hours);
//! longer times go to the last. Counts are atomics written by one thread at a time (the worker
//! that owns the histogram, or whoever holds the lock that guards it) with plain loads and stores,
//! no read-modify-write, so that recording costs a few nanoseconds and reading never blocks it; a
//! reader may see one sample half-recorded (in its bucket, not yet summed), never a torn number.
//!
//! # Sampling
//!
//! Reading the clock costs about 25 ns; a pool's tiniest tasks take about 500 ns each, clock
//! reads included. So a [`Sampler`] times its first [`SAMPLER_WARMUP`] events, then every event
//! while they come at least [`SAMPLE_SPACING`] apart, and one in `every` (a power of two, up to
//! [`MAX_SAMPLE_EVERY`]) when they come faster, recorded with weight `every`: the counts of
//! tasks stay exact, the histograms are unbiased estimates (their count within `every` of the
//! events'), and the clock costs under about 1% of the work. Only long bursts of tasks shorter
//! than `SAMPLE_SPACING` are sampled, so the only figure that may be missed is the longest of
//! such a burst's unsampled tasks.
//!
//! # Off
//!
//! [`set_enabled`]`(false)` (Python: `TREADLE_STATS=0`) makes the pools created afterwards
//! gather nothing, for an A/B measurement of what gathering costs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
const MAX_EXPONENT: u32 = 47;
/// How many buckets a [`Histogram`] has.
pub const BUCKETS: usize = (MAX_EXPONENT - SUB_BITS + 2) as usize * SUB;

/// Events closer together than this are sampled (see the module documentation).
pub const SAMPLE_SPACING: Duration = Duration::from_micros(20);
/// The most events a [`Sampler`] lets pass between two it times.
pub const MAX_SAMPLE_EVERY: u32 = 64;
/// How many events a [`Sampler`] times before it may sample: a small batch is timed whole.
pub const SAMPLER_WARMUP: u32 = 64;
/// How many ended workers a pool keeps the figures of, the most recent (a pool that recycles
/// its workers after each task would otherwise keep one record per task).
pub const ENDED_WORKERS_KEPT: usize = 256;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Whether pools created from now on gather statistics (on by default).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Relaxed);
}

/// Whether pools created now gather statistics.
pub fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

/// Adds `n` to a counter only one thread writes at a time (its owner, or under a lock).
#[inline]
pub fn add_single_writer(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn bucket(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let exponent = 63 - ns.leading_zeros();
    if exponent > MAX_EXPONENT {
        return BUCKETS - 1;
    }
    let mantissa = (ns >> (exponent - SUB_BITS)) as usize & (SUB - 1);
    (exponent - SUB_BITS + 1) as usize * SUB + mantissa
}

/// The middle of bucket `index`, in nanoseconds.
fn bucket_middle(index: usize) -> u64 {
    if index < SUB {
        return index as u64;
    }
    let exponent = (index / SUB) as u32 + SUB_BITS - 1;
    let low = ((SUB + index % SUB) as u64) << (exponent - SUB_BITS);
    low + (1u64 << (exponent - SUB_BITS)) / 2
}

/// A log-linear histogram of durations (see the module documentation).
pub struct Histogram {
    counts: Box<[AtomicU64; BUCKETS]>,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("max_ns", &self.max_ns.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Histogram {
    /// Records `weight` samples of `duration`. One thread at a time (see the module docs).
    #[inline]
    pub fn record(&self, duration: Duration, weight: u32) {
        let ns = nanos(duration);
        let weight = u64::from(weight);
        add_single_writer(&self.counts[bucket(ns)], weight);
        add_single_writer(&self.sum_ns, ns.saturating_mul(weight));
        if ns > self.max_ns.load(Relaxed) {
            self.max_ns.store(ns, Relaxed);
        }
    }

    /// Adds what `other` holds to this one (the one thread that writes this one).
    pub fn absorb(&self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter().zip(other.counts.iter()) {
            add_single_writer(mine, theirs.load(Relaxed));
        }
        add_single_writer(&self.sum_ns, other.sum_ns.load(Relaxed));
        let max = other.max_ns.load(Relaxed);
        if max > self.max_ns.load(Relaxed) {
            self.max_ns.store(max, Relaxed);
        }
    }

    /// The summary of these histograms together.
    pub fn summarize<'a>(histograms: impl IntoIterator<Item = &'a Histogram>) -> Summary {
        let mut counts = [0u64; BUCKETS];
        let (mut sum, mut max) = (0u64, 0u64);
        for histogram in histograms {
            for (total, bucket) in counts.iter_mut().zip(histogram.counts.iter()) {
                *total += bucket.load(Relaxed);
            }
            sum = sum.saturating_add(histogram.sum_ns.load(Relaxed));
            max = max.max(histogram.max_ns.load(Relaxed));
        }
        // A sample being recorded may be in its bucket and not yet in the sum: the buckets are
        // the count.
        let in_buckets: u64 = counts.iter().sum();
        if in_buckets == 0 {
            return Summary::default();
        }
        let percentile = |fraction: f64| {
            let rank = ((in_buckets as f64 * fraction).ceil() as u64).clamp(1, in_buckets);
            let mut seen = 0;
            for (index, &n) in counts.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return Duration::from_nanos(bucket_middle(index).min(max));
                }
            }
            Duration::from_nanos(max)
        };
        Summary {
            count: in_buckets,
            mean: Duration::from_nanos(sum / in_buckets),
            p50: percentile(0.50),
            p99: percentile(0.99),
            max: Duration::from_nanos(max),
        }
    }
}

/// Durations summed up: how many, their mean, median, 99th percentile and maximum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// How many (weighted, when sampled).
    pub count: u64,
    /// The mean.
    pub mean: Duration,
    /// The median (within about 6%).
    pub p50: Duration,
    /// The 99th percentile (within about 6%).
    pub p99: Duration,
    /// The longest.
    pub max: Duration,
}

/// Decides which events to time: all of them while they come at least [`SAMPLE_SPACING`]
/// apart, one in a power of two up to [`MAX_SAMPLE_EVERY`] when they come faster.
#[derive(Debug, Clone)]
pub struct Sampler {
    every: u32,
    left: u32,
    last: Option<Instant>,
    warmup: u32,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler {
            every: 1,
            left: 1,
            last: None,
            warmup: SAMPLER_WARMUP,
        }
    }
}

impl Sampler {
    /// Counts one event: `Some(weight)` when this one is to be timed (then call
    /// [`Sampler::timed`] with the clock's reading), standing for `weight` events.
    #[inline]
    pub fn due(&mut self) -> Option<u32> {
        self.left -= 1;
        (self.left == 0).then_some(self.every)
    }

    /// The event [`Sampler::due`] chose was timed at `now`: sets how many events pass until the
    /// next, by the pace of those since the last.
    pub fn timed(&mut self, now: Instant) {
        if self.warmup > 0 {
            self.warmup -= 1;
        } else if let Some(last) = self.last {
            let per_event = nanos(now.saturating_duration_since(last)) / u64::from(self.every);
            let wanted = nanos(SAMPLE_SPACING) / per_event.max(1);
            self.every = u32::try_from(wanted)
                .unwrap_or(u32::MAX)
                .clamp(1, MAX_SAMPLE_EVERY)
                .next_power_of_two()
                .min(MAX_SAMPLE_EVERY);
        }
        self.last = Some(now);
        self.left = self.every;
    }
}

/// How a task that a worker took ended, as its statistics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEnd {
    /// It returned.
    Returned,
    /// It raised (a crash of its worker counts here too).
    Raised,
    /// It was cancelled: before it started, or interrupted while it ran.
    Cancelled,
    /// Another thread ended it (its time limit passed) and counted it.
    Ended,
}

/// One worker's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSnapshot {
    /// Its thread's name, or for a process `pid N`.
    pub name: String,
    /// Its process id, for a worker process.
    pub pid: Option<u32>,
    /// Tasks it ran (returned, raised or interrupted).
    pub tasks: u64,
    /// Time it spent running them.
    pub busy: Duration,
    /// Time since it started, until now or its end.
    pub lifetime: Duration,
    /// Whether it still serves.
    pub alive: bool,
}

/// Why a process pool's workers were replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restarts {
    /// It died (a signal, an exit, the OOM killer), or never became ready.
    pub crashed: u64,
    /// Its task ran past its time limit and it was killed.
    pub timed_out: u64,
    /// Its running task was cancelled with `interrupt=True` and it was killed.
    pub interrupted: u64,
    /// It ran `max_tasks_per_child` tasks.
    pub recycled: u64,
}

/// A pool's figures at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Tasks accepted.
    pub submitted: u64,
    /// Tasks that returned.
    pub done: u64,
    /// Tasks that raised, or whose worker crashed.
    pub failed: u64,
    /// Tasks cancelled, before they started or while they ran.
    pub cancelled: u64,
    /// Tasks stopped at their time limit.
    pub timed_out: u64,
    /// How long the tasks that returned or raised ran.
    pub task_time: Summary,
    /// How long tasks waited between their submission and their start.
    pub queue_wait: Summary,
    /// The workers, live ones first, then the most recent of those that ended.
    pub workers: Vec<WorkerSnapshot>,
    /// For a process pool: the workers replaced, and why.
    pub restarts: Option<Restarts>,
    /// Time since the pool was made.
    pub uptime: Duration,
}

#[cfg(test)]
mod tests;
