//! `Queue<T>`: the bounded, shut-downable FIFO/LIFO queue behind `treadle.Queue`,
//! `treadle.LifoQueue` and `treadle.SimpleQueue`.
//!
//! The algorithm is a monitor, as in CPython's `queue.Queue`: one mutex guards the items, the
//! bound, the count of unfinished tasks and the shut-down flag, and three condvars stand for the
//! three things a thread can wait for (an item, a free slot, every task done). What is new is that
//! notifiers only signal when somebody is parked (each condvar has a parked count under the same
//! mutex), so the uncontended put and get are a lock, a push or pop, and an unlock.
//!
//! Why no wake-up is lost: a waiter tests its condition and increments the parked count with the
//! mutex held, and `Condvar::wait` releases that mutex atomically; every state change that can
//! make a condition true happens under the mutex and reads the parked count there, so it cannot
//! miss a waiter. A woken waiter re-checks the state before it leaves, even when its deadline has
//! passed, and takes what is there: a notification is never spent on a thread that then returns
//! empty-handed while the thing it was woken for stays available. A waiter that leaves at its
//! deadline without being notified took nothing and was owed nothing.
//!
//! Items are never dropped while the mutex is held: operations that refuse an item hand it back
//! (`PutError`), and `shutdown(immediate)` returns the items it discarded. Dropping an item may run
//! arbitrary code in the binding (a Python `__del__`), which must not run under a core mutex.
//!
//! The semantics are those of Python 3.13's `queue.Queue`, `shutdown()` included; the module docs
//! of the binding and `docs/queues.md` explain the rest.
//!
//! A queue can be *diverted* ([`Queue::divert`]), once and for good: the binding then runs it as
//! a monitor of its own (Python code as storage steps, a lock the program can hold) and keeps
//! only the items here, through the raw storage steps ([`Queue::push_raw`], [`Queue::pop_raw`],
//! [`Queue::len`]). Every other operation refuses a diverted queue (`Diverted`, handing an item
//! back), checked under the mutex, so that a call that chose this queue just before the
//! diversion goes to the monitor instead; waiters parked here wake to do the same.

use crate::primitive::{lock, wait_until, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};
use std::collections::VecDeque;
use std::time::Instant;

/// Which end `get` takes items from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// First in, first out (`queue.Queue`).
    Fifo,
    /// Last in, first out (`queue.LifoQueue`).
    Lifo,
}

/// What a blocked queue operation waits for; the deadlock detector's view of a queue wait.
///
/// Queue waits have no owner: a getter is woken by whichever thread puts next. The wait graph will
/// publish one of these (with the queue's address) before a thread parks and take it back after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueWait {
    /// `get`: an item, or a shut-down.
    NotEmpty,
    /// `put` on a bounded queue: a free slot, or a shut-down.
    NotFull,
    /// `join`: every task marked done.
    AllTasksDone,
}

/// Why a put did not happen; the item comes back to the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum PutError<T> {
    /// The queue stayed full until the deadline.
    Full(T),
    /// The queue is shut down.
    ShutDown(T),
    /// The queue is diverted: the put is for the binding's monitor to make.
    Diverted(T),
}

/// Why a get returned no item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetError {
    /// The queue stayed empty until the deadline.
    Empty,
    /// The queue is shut down and empty (or was shut down immediately).
    ShutDown,
    /// The queue is diverted: the get is for the binding's monitor to make.
    Diverted,
}

/// Why `task_done()` did not count a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskDoneError {
    /// It was called more times than items were put.
    TooMany,
    /// The queue is diverted: the tasks are counted by the binding's monitor.
    Diverted,
}

/// The queue is diverted ([`Queue::divert`]): the operation is for the binding's monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diverted;

/// What a diverted queue hands over to the monitor that takes its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handover {
    /// Tasks put and not yet marked done.
    pub unfinished_tasks: usize,
    /// Whether the queue was shut down.
    pub shut_down: bool,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    order: Order,
    /// Zero means unbounded, as in `queue.Queue`.
    maxsize: usize,
    unfinished_tasks: usize,
    shut_down: bool,
    /// Set once by [`Queue::divert`]; never cleared.
    diverted: bool,
    parked_getters: usize,
    parked_putters: usize,
    parked_joiners: usize,
}

impl<T> State<T> {
    #[inline]
    fn is_full(&self) -> bool {
        self.maxsize > 0 && self.items.len() >= self.maxsize
    }

    #[inline]
    fn free_slots(&self) -> usize {
        if self.maxsize == 0 {
            usize::MAX
        } else {
            self.maxsize.saturating_sub(self.items.len())
        }
    }

    #[inline]
    fn take(&mut self) -> Option<T> {
        match self.order {
            Order::Fifo => self.items.pop_front(),
            Order::Lifo => self.items.pop_back(),
        }
    }
}

/// A multi-producer, multi-consumer queue with an optional bound, task accounting and shut-down.
#[derive(Debug)]
pub struct Queue<T> {
    state: Mutex<State<T>>,
    /// The number of items, stored after every change under the mutex: a hint that a spinning
    /// waiter reads without taking the mutex (and so without taking its cache line from the
    /// thread that works on the queue). Decisions are made under the mutex only.
    len_hint: AtomicUsize,
    not_empty: Condvar,
    not_full: Condvar,
    all_tasks_done: Condvar,
}

/// How many times a blocking operation reads the length hint before it parks (never under loom,
/// where spinning only multiplies the interleavings).
const SPINS_BEFORE_PARKING: u32 = if cfg!(loom) { 0 } else { 1024 };

/// What a waiter waits for, as far as the length hint can tell.
#[derive(Clone, Copy)]
enum Want {
    /// An item: the hint is above zero.
    Item,
    /// A free slot: the hint is below the bound.
    Slot,
    /// Every task done: the hint cannot tell, so the waiter parks without spinning.
    Done,
}

/// Wakes `n` of the `parked` threads on `condvar` (all of them if `n` covers them).
#[inline]
fn wake(condvar: &Condvar, parked: usize, n: usize) {
    if parked == 0 || n == 0 {
        return;
    }
    if n >= parked {
        condvar.notify_all();
    } else {
        for _ in 0..n {
            condvar.notify_one();
        }
    }
}

impl<T> Queue<T> {
    /// An empty queue taking items in `order`, holding at most `maxsize` items (0: unbounded).
    pub fn new(order: Order, maxsize: usize) -> Queue<T> {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                order,
                maxsize,
                unfinished_tasks: 0,
                shut_down: false,
                diverted: false,
                parked_getters: 0,
                parked_putters: 0,
                parked_joiners: 0,
            }),
            len_hint: AtomicUsize::new(0),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            all_tasks_done: Condvar::new(),
        }
    }

    /// Locks the state and waits until `ready` holds, `deadline` passes, or at once if not
    /// `blocking`, parked on `condvar` with the parked count `parked` raised. Returns the guard
    /// and whether `ready` held when it was last checked.
    #[inline]
    fn lock_when(
        &self,
        want: Want,
        condvar: &Condvar,
        parked: fn(&mut State<T>) -> &mut usize,
        blocking: bool,
        deadline: Option<Instant>,
        ready: impl Fn(&State<T>) -> bool,
    ) -> (MutexGuard<'_, State<T>>, bool) {
        let state = lock(&self.state);
        if ready(&state) {
            return (state, true);
        }
        if !blocking {
            return (state, false);
        }
        self.wait_for(state, want, condvar, parked, deadline, ready)
    }

    /// The slow path of [`Queue::lock_when`]: `ready` did not hold at the first look.
    #[cold]
    #[inline(never)]
    fn wait_for<'a>(
        &'a self,
        mut state: MutexGuard<'a, State<T>>,
        want: Want,
        condvar: &Condvar,
        parked: fn(&mut State<T>) -> &mut usize,
        deadline: Option<Instant>,
        ready: impl Fn(&State<T>) -> bool,
    ) -> (MutexGuard<'a, State<T>>, bool) {
        let mut spin = SPINS_BEFORE_PARKING > 0 && !matches!(want, Want::Done);
        loop {
            if ready(&state) {
                return (state, true);
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return (state, false);
            }
            if spin {
                // The other side of a hand-off is often a few hundred nanoseconds away: watch the
                // length hint for a while before paying for a sleep and a wake-up. Reading it
                // leaves the mutex alone; the mutex is taken again only when the hint looks good.
                spin = false;
                let maxsize = state.maxsize;
                drop(state);
                let looks_ready = || {
                    let len = self.len_hint.load(Ordering::Relaxed);
                    match want {
                        Want::Item => len > 0,
                        _ => maxsize == 0 || len < maxsize,
                    }
                };
                for _ in 0..SPINS_BEFORE_PARKING {
                    if looks_ready() {
                        break;
                    }
                    std::hint::spin_loop();
                }
                state = lock(&self.state);
                continue;
            }
            let timed_out;
            (state, timed_out) = self.park(condvar, state, parked, deadline);
            if timed_out {
                let ready = ready(&state);
                return (state, ready);
            }
        }
    }

    #[cold]
    fn park<'a>(
        &self,
        condvar: &Condvar,
        mut state: MutexGuard<'a, State<T>>,
        parked: fn(&mut State<T>) -> &mut usize,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, State<T>>, bool) {
        *parked(&mut state) += 1;
        let (mut state, timed_out) = wait_until(condvar, state, deadline);
        *parked(&mut state) -= 1;
        (state, timed_out)
    }

    /// Locks the state once a put can go ahead (a free slot or a shut-down), or at the deadline.
    #[inline]
    fn lock_for_put(&self, blocking: bool, deadline: Option<Instant>) -> MutexGuard<'_, State<T>> {
        self.lock_when(
            Want::Slot,
            &self.not_full,
            |s| &mut s.parked_putters,
            blocking,
            deadline,
            |s| s.shut_down || s.diverted || !s.is_full(),
        )
        .0
    }

    /// Locks the state once a get can go ahead (an item or a shut-down), or at the deadline.
    #[inline]
    fn lock_for_get(&self, blocking: bool, deadline: Option<Instant>) -> MutexGuard<'_, State<T>> {
        self.lock_when(
            Want::Item,
            &self.not_empty,
            |s| &mut s.parked_getters,
            blocking,
            deadline,
            |s| s.shut_down || s.diverted || !s.items.is_empty(),
        )
        .0
    }

    /// Counts `n` items just added as tasks, unlocks, and wakes up to `n` getters.
    #[inline]
    fn added(&self, mut state: MutexGuard<'_, State<T>>, n: usize) {
        state.unfinished_tasks += n;
        self.len_hint.store(state.items.len(), Ordering::Relaxed);
        let parked = state.parked_getters;
        drop(state);
        wake(&self.not_empty, parked, n);
    }

    /// Unlocks after `n` items were taken, and wakes up to `n` putters.
    #[inline]
    fn removed(&self, state: MutexGuard<'_, State<T>>, n: usize) {
        self.len_hint.store(state.items.len(), Ordering::Relaxed);
        let parked = state.parked_putters;
        drop(state);
        wake(&self.not_full, parked, n);
    }

    #[inline]
    fn put_when(
        &self,
        item: T,
        blocking: bool,
        deadline: Option<Instant>,
    ) -> Result<(), PutError<T>> {
        let mut state = self.lock_for_put(blocking, deadline);
        if state.diverted {
            return Err(PutError::Diverted(item));
        }
        if state.shut_down {
            return Err(PutError::ShutDown(item));
        }
        if state.is_full() {
            return Err(PutError::Full(item));
        }
        state.items.push_back(item);
        self.added(state, 1);
        Ok(())
    }

    /// Puts `item`, waiting for a free slot until `deadline` (`None`: forever).
    pub fn put_until(&self, item: T, deadline: Option<Instant>) -> Result<(), PutError<T>> {
        self.put_when(item, true, deadline)
    }

    /// Puts `item` if a slot is free now.
    #[inline]
    pub fn try_put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_when(item, false, None)
    }

    /// Puts as many of `items` as there are free slots, in order, waiting until `deadline` for the
    /// first free slot (not at all unless `blocking`). Items are taken from the front of `items`;
    /// what is left there was not put. Returns the number put, or why none was.
    pub fn put_many_until(
        &self,
        items: &mut VecDeque<T>,
        blocking: bool,
        deadline: Option<Instant>,
    ) -> Result<usize, PutError<()>> {
        if items.is_empty() {
            return Ok(0);
        }
        let mut state = self.lock_for_put(blocking, deadline);
        if state.diverted {
            return Err(PutError::Diverted(()));
        }
        if state.shut_down {
            return Err(PutError::ShutDown(()));
        }
        let n = state.free_slots().min(items.len());
        if n == 0 {
            return Err(PutError::Full(()));
        }
        state.items.extend(items.drain(..n));
        self.added(state, n);
        Ok(n)
    }

    /// Takes up to `max_items` items (at least one), appending them to `out`, waiting until
    /// `deadline` for the first (not at all unless `blocking`). Returns how many were taken.
    pub fn get_many_until(
        &self,
        max_items: usize,
        out: &mut Vec<T>,
        blocking: bool,
        deadline: Option<Instant>,
    ) -> Result<usize, GetError> {
        if max_items == 0 {
            return Ok(0);
        }
        let mut state = self.lock_for_get(blocking, deadline);
        if state.diverted {
            return Err(GetError::Diverted);
        }
        let n = state.items.len().min(max_items);
        if n == 0 {
            return Err(if state.shut_down {
                GetError::ShutDown
            } else {
                GetError::Empty
            });
        }
        out.reserve(n);
        for _ in 0..n {
            out.extend(state.take());
        }
        self.removed(state, n);
        Ok(n)
    }

    #[inline]
    fn get_when(&self, blocking: bool, deadline: Option<Instant>) -> Result<T, GetError> {
        let mut state = self.lock_for_get(blocking, deadline);
        if state.diverted {
            return Err(GetError::Diverted);
        }
        match state.take() {
            Some(item) => {
                self.removed(state, 1);
                Ok(item)
            }
            None if state.shut_down => Err(GetError::ShutDown),
            None => Err(GetError::Empty),
        }
    }

    /// Takes an item, waiting until `deadline` (`None`: forever).
    pub fn get_until(&self, deadline: Option<Instant>) -> Result<T, GetError> {
        self.get_when(true, deadline)
    }

    /// Takes an item if one is there now.
    #[inline]
    pub fn try_get(&self) -> Result<T, GetError> {
        self.get_when(false, None)
    }

    /// Marks one task done; wakes the joiners when none is left.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let mut state = lock(&self.state);
        if state.diverted {
            return Err(TaskDoneError::Diverted);
        }
        if state.unfinished_tasks == 0 {
            return Err(TaskDoneError::TooMany);
        }
        state.unfinished_tasks -= 1;
        if state.unfinished_tasks == 0 && state.parked_joiners > 0 {
            self.all_tasks_done.notify_all();
        }
        Ok(())
    }

    /// Waits until every task put has been marked done, or `deadline`. Returns whether they were.
    pub fn join_until(&self, deadline: Option<Instant>) -> Result<bool, Diverted> {
        let (state, done) = self.lock_when(
            Want::Done,
            &self.all_tasks_done,
            |s| &mut s.parked_joiners,
            true,
            deadline,
            |s| s.diverted || s.unfinished_tasks == 0,
        );
        if state.diverted {
            return Err(Diverted);
        }
        Ok(done)
    }

    /// Shuts the queue down: puts fail from now on, gets fail once the queue is empty, and every
    /// blocked thread wakes to re-check. With `immediate`, the items still queued are discarded
    /// (each counting as a task done) and returned, for the caller to drop outside the lock.
    pub fn shutdown(&self, immediate: bool) -> Result<Vec<T>, Diverted> {
        let mut state = lock(&self.state);
        if state.diverted {
            return Err(Diverted);
        }
        state.shut_down = true;
        let mut discarded = Vec::new();
        if immediate {
            discarded.extend(state.items.drain(..));
            self.len_hint.store(0, Ordering::Relaxed);
            state.unfinished_tasks = state.unfinished_tasks.saturating_sub(discarded.len());
            if state.parked_joiners > 0 {
                self.all_tasks_done.notify_all();
            }
        }
        if state.parked_getters > 0 {
            self.not_empty.notify_all();
        }
        if state.parked_putters > 0 {
            self.not_full.notify_all();
        }
        Ok(discarded)
    }

    /// Diverts the queue (see the module's documentation): from now on only the raw storage
    /// steps work, and every parked thread wakes to be told so. Returns what the monitor taking
    /// over needs, the first time; `None` if the queue was diverted already.
    pub fn divert(&self) -> Option<Handover> {
        let mut state = lock(&self.state);
        if state.diverted {
            return None;
        }
        state.diverted = true;
        let handover = Handover {
            unfinished_tasks: state.unfinished_tasks,
            shut_down: state.shut_down,
        };
        drop(state);
        self.not_empty.notify_all();
        self.not_full.notify_all();
        self.all_tasks_done.notify_all();
        Some(handover)
    }

    /// Whether the queue has been shut down.
    pub fn is_shut_down(&self) -> bool {
        lock(&self.state).shut_down
    }

    /// The number of items queued (a snapshot).
    #[inline]
    pub fn len(&self) -> usize {
        lock(&self.state).items.len()
    }

    /// Whether no item is queued (a snapshot).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is at its bound (a snapshot).
    pub fn is_full(&self) -> bool {
        lock(&self.state).is_full()
    }

    /// The bound (0: unbounded).
    pub fn maxsize(&self) -> usize {
        lock(&self.state).maxsize
    }

    /// Changes the bound; putters waiting for a slot re-check it.
    pub fn set_maxsize(&self, maxsize: usize) {
        let mut state = lock(&self.state);
        state.maxsize = maxsize;
        if state.parked_putters > 0 {
            self.not_full.notify_all();
        }
    }

    /// How many tasks are not yet marked done.
    pub fn unfinished_tasks(&self) -> usize {
        lock(&self.state).unfinished_tasks
    }

    /// Appends `item` at the back with no bound, shut-down or task accounting: the storage step
    /// alone, as `queue.Queue._put` is.
    pub fn push_raw(&self, item: T) {
        let mut state = lock(&self.state);
        state.items.push_back(item);
        self.len_hint.store(state.items.len(), Ordering::Relaxed);
        let parked = state.parked_getters;
        drop(state);
        wake(&self.not_empty, parked, 1);
    }

    /// Takes the next item with no accounting: the storage step alone, as `queue.Queue._get` is.
    pub fn pop_raw(&self) -> Option<T> {
        let mut state = lock(&self.state);
        let item = state.take();
        let n = usize::from(item.is_some());
        self.removed(state, n);
        item
    }

    /// Empties the queue and resets it to a fresh state with a new bound, returning the items it
    /// held (for the caller to drop outside the lock). Threads still blocked wake to re-check. A
    /// diverted queue stays diverted.
    pub fn reset(&self, maxsize: usize) -> VecDeque<T> {
        let mut state = lock(&self.state);
        let items = std::mem::take(&mut state.items);
        self.len_hint.store(0, Ordering::Relaxed);
        state.maxsize = maxsize;
        state.unfinished_tasks = 0;
        state.shut_down = false;
        self.not_empty.notify_all();
        self.not_full.notify_all();
        self.all_tasks_done.notify_all();
        items
    }
}

#[cfg(test)]
mod tests;

impl QueueWait {
    /// This wait as a wait-graph ticket.
    pub fn ticket(self) -> u64 {
        match self {
            QueueWait::NotEmpty => 0,
            QueueWait::NotFull => 1,
            QueueWait::AllTasksDone => 2,
        }
    }
}

impl<T: Send> crate::wait_graph::WaitTarget for Queue<T> {
    fn owner(&self) -> Option<crate::ThreadId> {
        None
    }
    fn is_ready(&self, ticket: u64) -> bool {
        let state = lock(&self.state);
        if state.shut_down || state.diverted {
            return true;
        }
        drop(state);
        match ticket {
            0 => !self.is_empty(),
            1 => !self.is_full(),
            _ => self.unfinished_tasks() == 0,
        }
    }
}
