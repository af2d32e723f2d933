//! Which Python thread is which: the side tables that turn the core's thread numbers into what
//! a report names (`threading.get_ident()`) and what a stall verdict needs (the kernel's thread
//! id, to tell the interpreter's parked threads from threads made by C code).
//!
//! A thread is registered the first time it waits in treadle (or starts as a pool worker, or
//! binds a `_ThreadDone`); its entries go when the OS thread ends.

use parking_lot::Mutex;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use treadle_core::ThreadId;
use treadle_os::os_threads;

/// treadle thread number -> `threading.get_ident()`, for every thread that has waited in treadle.
static IDENTS: Mutex<Option<HashMap<u64, u64>>> = Mutex::new(None);
/// The reverse: `threading.get_ident()` -> treadle thread number.
static THREADS: Mutex<Option<HashMap<u64, u64>>> = Mutex::new(None);
/// treadle thread number -> the kernel's id of the thread (`gettid`).
static NATIVE_IDS: Mutex<Option<HashMap<u64, i32>>> = Mutex::new(None);
/// The main thread's treadle number, once known.
static MAIN_THREAD: AtomicU64 = AtomicU64::new(0);

/// Runs `f` on the map behind `map`, made on first use.
pub(crate) fn with_map<K, V, R>(
    map: &Mutex<Option<HashMap<K, V>>>,
    f: impl FnOnce(&mut HashMap<K, V>) -> R,
) -> R {
    f(map.lock().get_or_insert_with(HashMap::new))
}

struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        with_map(&NATIVE_IDS, |native| native.remove(&self.0));
        if let Some(ident) = with_map(&IDENTS, |idents| idents.remove(&self.0)) {
            // A later thread may already have the same ident (they are reused): leave its entry.
            with_map(&THREADS, |threads| {
                if threads.get(&ident) == Some(&self.0) {
                    threads.remove(&ident);
                }
            });
        }
    }
}

thread_local! {
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    // Removes the thread's entry when the OS thread ends.
    static REGISTRATION: Cell<Option<Registration>> = const { Cell::new(None) };
}

/// The calling thread's `threading.get_ident()`: cheap (no thread-local lookup), so that a
/// lock can record its holder on every acquisition.
#[inline]
pub(crate) fn current_ident() -> u64 {
    // SAFETY: PyThread_get_thread_ident has no preconditions; it is pthread_self() on POSIX.
    unsafe { pyo3::ffi::PyThread_get_thread_ident() as u64 }
}

/// The treadle thread number of the thread with `threading.get_ident()` `ident`, if that thread
/// has ever waited in treadle (every thread in a cycle has).
pub(crate) fn thread_of_ident(ident: u64) -> Option<ThreadId> {
    with_map(&THREADS, |threads| threads.get(&ident).copied()).map(ThreadId)
}

/// The `threading.get_ident()` of a registered thread.
pub(crate) fn ident_of(thread: Option<ThreadId>) -> Option<u64> {
    let thread = thread?;
    with_map(&IDENTS, |idents| idents.get(&thread.0).copied())
}

/// The kernel's ids of those of `threads` that are registered.
pub(crate) fn native_ids(threads: impl Iterator<Item = ThreadId>) -> Vec<i32> {
    with_map(&NATIVE_IDS, |native| {
        threads
            .filter_map(|thread| native.get(&thread.0).copied())
            .collect()
    })
}

/// The main thread's treadle number, if it registered.
pub(crate) fn main_thread() -> Option<ThreadId> {
    let main = MAIN_THREAD.load(Ordering::Relaxed);
    (main != 0).then_some(ThreadId(main))
}

/// Records the calling thread's Python identity (once per thread) and returns its number.
pub(crate) fn register_current_thread() -> ThreadId {
    let me = ThreadId::current();
    if !REGISTERED.with(Cell::get) {
        let ident = current_ident();
        with_map(&IDENTS, |idents| idents.insert(me.0, ident));
        with_map(&THREADS, |threads| threads.insert(ident, me.0));
        with_map(&NATIVE_IDS, |native| {
            native.insert(me.0, os_threads::current_thread_id())
        });
        if os_threads::is_main_thread() {
            MAIN_THREAD.store(me.0, Ordering::Relaxed);
        }
        REGISTERED.with(|registered| registered.set(true));
        REGISTRATION.with(|registration| registration.set(Some(Registration(me.0))));
    }
    me
}
