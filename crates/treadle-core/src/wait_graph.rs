//! The wait graph: who waits on whom, so that a deadlock raises instead of hanging.
//!
//! Every blocking wait in treadle publishes a record (what it waits on, through a [`WaitTarget`])
//! before it parks and withdraws it as soon as the wait is over ([`Published::withdraw`]). Two
//! questions are asked of the graph, both on the slow path only (a thread about to park, or
//! parked and waking for a periodic look):
//!
//! 1. **Owned cycles** ([`WaitGraph::find_cycle`]): a wait whose target has an owner (an `RLock`'s
//!    owner, a `Lock`'s holder, the thread a `join` waits for) is an edge waiter -> owner. The
//!    thread about to park walks owner -> that owner's wait -> ... and if the walk returns to
//!    itself, every thread on it waits on the next and none can move: a deadlock. The walk runs
//!    under the graph's mutex against the live records, and an edge counts only while its target
//!    is not ready (a holder that already released, a joined thread that already ended), so a
//!    wake-up in flight is never mistaken for a cycle.
//! 2. **Stalls** ([`WaitGraph::find_stall`] then [`WaitGraph::confirm_stall`]): ownerless waits
//!    (Event, Condition, Semaphore, Barrier, Queue) have no owner to follow. They are judged when
//!    every live thread of the process is parked in a treadle wait with no deadline and no target
//!    ready: then nobody is left to set, notify or release anything. The caller tells how many
//!    threads live; a thread outside treadle (in I/O, `time.sleep`, a foreign lock, C code) has no
//!    record, so the count never matches and nothing is reported. A suspected stall is confirmed
//!    only after a grace period, with the very same records (same serial numbers) still parked and
//!    still not ready. A stall is a deadlock only if one of its threads waits on something held
//!    ([`Record::waits_on_a_holder`]: a held lock, a thread's end, a running task): threads that
//!    all wait for input or a signal (a server's idle workers on a queue, its main thread on an
//!    event until Ctrl-C) are idle by design, which the graph cannot tell from a lost wake-up.
//!
//! A wait with a deadline is never part of a verdict: it ends by itself.
//!
//! The graph uses `std`'s mutex even under loom: it is a diagnostic beside the primitives, checked
//! by its own tests, not part of their models.

use crate::primitive::lock_std;
use crate::thread_id::ThreadId;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// What a published wait waits on: enough for the graph to follow it and to tell when it is over.
pub trait WaitTarget: Sync {
    /// The one thread that must act to end this wait, if there is one (owned waits).
    fn owner(&self) -> Option<ThreadId>;
    /// Whether the wait could end now (the lock is free, the event set, the thread ended...):
    /// such a waiter is waking, not stuck. `ticket` is the value given when it was published.
    fn is_ready(&self, ticket: u64) -> bool;
}

/// The kind of thing a thread waits on, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitKind {
    /// A `Lock` (owner: the thread that acquired it).
    Lock,
    /// An `RLock` (owner: the owning thread).
    RLock,
    /// A thread's end (`join`; owner: that thread).
    Join,
    /// A future's result (owner: the thread running it).
    Future,
    /// A `Condition`'s notification.
    Condition,
    /// A `Condition`'s lock, re-taken after a wait (owner: the lock's holder). This wait cannot
    /// fail (the lock must be held when `wait()` returns), so a cycle it closes is reported by
    /// the next participant that looks: see [`WaitGraph::find_unraised_cycle`].
    Reacquire,
    /// An `Event`.
    Event,
    /// A `Semaphore`.
    Semaphore,
    /// A `Barrier`.
    Barrier,
    /// A queue's item or free slot.
    Queue,
    /// Room in a thread pool's bounded queue, for a submission (`max_pending`, `on_full="block"`).
    Submit,
}

impl WaitKind {
    /// The kind's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            WaitKind::Lock => "lock",
            WaitKind::RLock => "rlock",
            WaitKind::Join => "join",
            WaitKind::Future => "future",
            WaitKind::Condition => "condition",
            WaitKind::Reacquire => "reacquire",
            WaitKind::Event => "event",
            WaitKind::Semaphore => "semaphore",
            WaitKind::Barrier => "barrier",
            WaitKind::Queue => "queue",
            WaitKind::Submit => "submit",
        }
    }

    /// Whether a wait of this kind can end with an error, as a wait that closes a cycle does.
    pub fn can_fail(self) -> bool {
        self != WaitKind::Reacquire
    }
}

/// What deadlock detection does when it finds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Publish nothing, detect nothing.
    Off = 0,
    /// Report, and let the wait go on.
    Warn = 1,
    /// The wait that closes the cycle fails with the report.
    Raise = 2,
}

/// One edge of a report: `waiter` waits on something of `kind`, owned by `owner` if owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// The waiting thread.
    pub waiter: ThreadId,
    /// What it waits on.
    pub kind: WaitKind,
    /// Who must act for the wait to end, for owned waits.
    pub owner: Option<ThreadId>,
    /// Whether the wait has a deadline.
    pub timed: bool,
}

struct Record {
    /// Valid while the record is in the graph: see [`WaitGraph::publish`].
    target: *const (dyn WaitTarget + 'static),
    kind: WaitKind,
    timed: bool,
    ticket: u64,
    serial: u64,
}

// SAFETY: `target` points to a `WaitTarget`, which is `Sync`; it is dereferenced only under the
// graph's mutex while the record is present, and `publish`'s contract keeps it alive that long.
unsafe impl Send for Record {}

impl Record {
    fn target(&self) -> &dyn WaitTarget {
        // SAFETY: records are reachable only through the graph's mutex, and the publisher removes
        // its record (dropping its `Published`) before the target may be freed.
        unsafe { &*self.target }
    }

    fn edge(&self, waiter: ThreadId) -> Edge {
        Edge {
            waiter,
            kind: self.kind,
            owner: self.target().owner(),
            timed: self.timed,
        }
    }

    fn is_stuck(&self) -> bool {
        !self.timed && !self.target().is_ready(self.ticket)
    }

    /// Whether this wait is on something a thread holds: a lock (held, or the wait would be
    /// ready), a thread's end, or a task a thread runs. A stall needs one such wait to be a
    /// deadlock; the other waits are for input or a signal anybody could give.
    fn waits_on_a_holder(&self) -> bool {
        matches!(
            self.kind,
            WaitKind::Lock | WaitKind::RLock | WaitKind::Reacquire | WaitKind::Join
        ) || self.target().owner().is_some()
    }
}

/// Which records a verdict was reached on: each thread with its record's serial number.
type Serials = Vec<(ThreadId, u64)>;

#[derive(Default)]
struct Records {
    by_thread: HashMap<ThreadId, Record>,
    next_serial: u64,
    /// Threads being started right now (see [`WaitGraph::thread_starting`]).
    starting: usize,
    /// The stall last reported, so that the threads that confirm it at the same time report it
    /// once.
    reported: Option<Serials>,
    /// The cycle last reported by [`WaitGraph::find_unraised_cycle`], likewise.
    reported_cycle: Option<Serials>,
}

/// The process's wait graph.
pub struct WaitGraph {
    records: Mutex<Records>,
    mode: AtomicU8,
}

/// A suspected stall: which records were parked when it was suspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    serials: Vec<(ThreadId, u64)>,
}

impl Stall {
    /// The parked threads.
    pub fn threads(&self) -> impl Iterator<Item = ThreadId> + '_ {
        self.serials.iter().map(|(thread, _)| *thread)
    }
}

/// A published wait; dropping it withdraws the record.
pub struct Published<'a> {
    graph: &'a WaitGraph,
    thread: ThreadId,
    serial: u64,
    /// Whether the record was taken out already (by [`Published::withdraw`]).
    withdrawn: AtomicBool,
    _target: PhantomData<&'a dyn WaitTarget>,
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        self.withdraw();
    }
}

impl Published<'_> {
    /// The thread that published the wait.
    pub fn thread(&self) -> ThreadId {
        self.thread
    }

    /// Withdraws the record now, as soon as the wait is over, where the guard can be dropped
    /// only later (after re-attaching to an interpreter, which may take long). A waiter that got
    /// what it waited for has often taken it (the lock, the item, the task), so its target is not
    /// ready any more: had its record stood meanwhile, it would have looked stuck, and a stall
    /// could have been judged on a thread that is about to go on. Dropping the guard afterwards
    /// does nothing more.
    pub fn withdraw(&self) {
        if self.withdrawn.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut records = self.graph.lock();
        if records
            .by_thread
            .get(&self.thread)
            .is_some_and(|record| record.serial == self.serial)
        {
            records.by_thread.remove(&self.thread);
        }
    }
}

impl WaitGraph {
    /// A new, empty graph in `mode`.
    pub fn new(mode: Mode) -> WaitGraph {
        WaitGraph {
            records: Mutex::new(Records::default()),
            mode: AtomicU8::new(mode as u8),
        }
    }

    /// The process-wide graph (mode `Raise` until changed).
    pub fn global() -> &'static WaitGraph {
        static GLOBAL: OnceLock<WaitGraph> = OnceLock::new();
        GLOBAL.get_or_init(|| WaitGraph::new(Mode::Raise))
    }

    /// The current mode.
    #[inline]
    pub fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Relaxed) {
            0 => Mode::Off,
            1 => Mode::Warn,
            _ => Mode::Raise,
        }
    }

    /// Changes the mode; waits already published stay until they end.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Records> {
        lock_std(&self.records)
    }

    /// Publishes that the calling thread is about to wait on `target`.
    ///
    /// # Safety
    ///
    /// The returned [`Published`] must be dropped (not leaked with `mem::forget`) before `target`
    /// is freed: the graph reads `target` through a pointer for as long as the record stands.
    pub unsafe fn publish<'a>(
        &'a self,
        target: &'a (dyn WaitTarget + 'a),
        kind: WaitKind,
        timed: bool,
        ticket: u64,
    ) -> Published<'a> {
        let thread = ThreadId::current();
        let target: *const (dyn WaitTarget + 'a) = target;
        // SAFETY: only the lifetime is erased; the caller's contract (above) keeps the target
        // alive while the record can be reached.
        let target: *const (dyn WaitTarget + 'static) = unsafe { std::mem::transmute(target) };
        let mut records = self.lock();
        records.next_serial += 1;
        let serial = records.next_serial;
        records.by_thread.insert(
            thread,
            Record {
                target,
                kind,
                timed,
                ticket,
                serial,
            },
        );
        Published {
            graph: self,
            thread,
            serial,
            withdrawn: AtomicBool::new(false),
            _target: PhantomData,
        }
    }

    /// Walks owned waits from `me`: the cycle back to `me`, if there is one, as its edges in
    /// order (the first is `me`'s own). Timed waits are included (the caller decides what a
    /// timed edge means); waits whose target is ready end the walk.
    pub fn find_cycle(&self, me: ThreadId) -> Option<Vec<Edge>> {
        Self::cycle_through(&self.lock(), me).map(|(edges, _)| edges)
    }

    /// For a parked thread's periodic look: a cycle through `me` that was closed by a wait that
    /// cannot fail (a condition's re-acquire) and so was not reported when it formed; none with a
    /// deadline on it. Each such cycle is returned once, to the first participant that looks.
    pub fn find_unraised_cycle(&self, me: ThreadId) -> Option<Vec<Edge>> {
        let mut records = self.lock();
        let (edges, mut serials) = Self::cycle_through(&records, me)?;
        if edges.iter().all(|edge| edge.kind.can_fail()) || edges.iter().any(|edge| edge.timed) {
            return None;
        }
        serials.sort_unstable();
        if records.reported_cycle.as_ref() == Some(&serials) {
            return None;
        }
        records.reported_cycle = Some(serials);
        Some(edges)
    }

    /// The owned cycle through `me`, with each record's serial number.
    fn cycle_through(records: &Records, me: ThreadId) -> Option<(Vec<Edge>, Serials)> {
        let mut edges = Vec::new();
        let mut serials = Vec::new();
        let mut current = me;
        loop {
            let record = records.by_thread.get(&current)?;
            if record.target().is_ready(record.ticket) {
                return None;
            }
            let edge = record.edge(current);
            let owner = edge.owner?;
            edges.push(edge);
            serials.push((current, record.serial));
            if owner == me {
                return Some((edges, serials));
            }
            if edges.len() > records.by_thread.len() {
                // A cycle that does not pass through `me`: not this wait's to report.
                return None;
            }
            current = owner;
        }
    }

    /// Whether all `live_threads` threads are parked with no deadline and nothing ready, one of
    /// them on something a thread holds: the suspicion of a stall, to confirm after a grace
    /// period with [`WaitGraph::confirm_stall`].
    pub fn find_stall(&self, live_threads: usize) -> Option<Stall> {
        let records = self.lock();
        if records.by_thread.len() < live_threads || live_threads == 0 || records.starting > 0 {
            return None;
        }
        if !records.by_thread.values().all(Record::is_stuck)
            || !records.by_thread.values().any(Record::waits_on_a_holder)
        {
            return None;
        }
        let mut serials: Vec<_> = records
            .by_thread
            .iter()
            .map(|(thread, record)| (*thread, record.serial))
            .collect();
        serials.sort_unstable();
        Some(Stall { serials })
    }

    /// Confirms a suspected stall: the same waits are still parked and still stuck. Returns
    /// every thread's edge.
    pub fn confirm_stall(&self, stall: &Stall) -> Option<Vec<Edge>> {
        let mut records = self.lock();
        if records.by_thread.len() != stall.serials.len() || records.starting > 0 {
            return None;
        }
        if records.reported.as_ref() == Some(&stall.serials) {
            return None;
        }
        let mut edges = Vec::with_capacity(stall.serials.len());
        let mut held = false;
        for (thread, serial) in &stall.serials {
            let record = records.by_thread.get(thread)?;
            if record.serial != *serial || !record.is_stuck() {
                return None;
            }
            held |= record.waits_on_a_holder();
            edges.push(record.edge(*thread));
        }
        if !held {
            return None;
        }
        records.reported = Some(stall.serials.clone());
        Some(edges)
    }

    /// A thread is being started (`starting`) or has started (`!starting`). Until it runs, the
    /// interpreter does not count it among the live threads, yet it may be the one to wake the
    /// others (its starter waits for it): no stall is judged while any thread is starting.
    pub fn thread_starting(&self, starting: bool) {
        let mut records = self.lock();
        if starting {
            records.starting += 1;
        } else {
            records.starting = records.starting.saturating_sub(1);
        }
    }

    /// Every published wait, for `dump_waits()`.
    pub fn snapshot(&self) -> Vec<Edge> {
        let records = self.lock();
        let mut edges: Vec<_> = records
            .by_thread
            .iter()
            .map(|(thread, record)| record.edge(*thread))
            .collect();
        edges.sort_unstable_by_key(|edge| edge.waiter);
        edges
    }
}

#[cfg(test)]
mod tests;
