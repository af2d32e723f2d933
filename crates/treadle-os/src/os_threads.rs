//! The process's other threads, as the kernel sees them: a stall is judged only when no thread
//! outside the wait graph could wake a waiter.
//!
//! Threads made by C code (a BLAS library's worker pool, a driver's callback thread) are not the
//! interpreter's and never wait in treadle; any of them might call back into Python and wake a
//! waiter. One that sleeps in an untimed wait on a private futex (an idle pool thread in
//! `pthread_cond_wait`) wakes only when another thread wakes it, so it cannot be the one to end
//! a stall in which every other thread is parked; one that runs, sleeps with a deadline, or
//! waits in any other call (I/O, `poll`, `nanosleep`) could. Read from `/proc/self/task`; where it
//! cannot be read the answer is "unknown" and the caller judges no stall while foreign threads
//! may exist.

#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// The `futex` system call's number on this architecture.
pub const SYS_FUTEX: u32 = linux_raw_sys::general::__NR_futex;

/// The ids of the process's threads, or `None` where they cannot be listed.
///
/// A thread that exits while the kernel walks the list of threads for the directory can cut
/// the listing short (the walk stops at a thread no longer alive), so the directory is read
/// twice and the two listings merged: a thread is then left out only if two threads end at
/// the moments each listing passes them.
pub fn thread_ids() -> Option<Vec<i32>> {
    let mut ids = list_threads()?;
    ids.extend(list_threads()?);
    ids.sort_unstable();
    ids.dedup();
    Some(ids)
}

fn list_threads() -> Option<Vec<i32>> {
    let entries = std::fs::read_dir("/proc/self/task").ok()?;
    Some(
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
    )
}

/// The calling thread's id, as in [`thread_ids`] (`gettid`).
pub fn current_thread_id() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Bumped in a child process right after `fork()`: a thread's remembered answer of
/// [`is_main_thread`] holds only in the process (the fork generation) it was found in.
static FORKS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// (fork generation, whether this thread is the main thread), once asked.
    static MAIN: Cell<Option<(u64, bool)>> = const { Cell::new(None) };
}

extern "C" fn forked() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// How many times this process's line of ancestors forked to make it: what a thread remembers
/// about its process (its pid, its thread id, whether it is the main thread) holds only while
/// this is unchanged.
pub fn fork_generation() -> u64 {
    static AT_FORK: Once = Once::new();
    AT_FORK.call_once(|| {
        // SAFETY: the handler only bumps an atomic, which is what a child's at-fork handler may
        // do (no allocation, no lock).
        unsafe { libc::pthread_atfork(None, None, Some(forked)) };
    });
    FORKS.load(Ordering::Relaxed)
}

/// Whether the calling thread is the process's main thread (its id is the process's), the one
/// Python runs signal handlers in. After `fork()`, the forking thread is the child's main thread.
///
/// Every blocking wait asks, so the answer is remembered per thread (two system calls, each
/// costly on a virtual machine, become a thread-local read), until the process forks.
pub fn is_main_thread() -> bool {
    let generation = fork_generation();
    MAIN.with(|known| match known.get() {
        Some((found_in, main)) if found_in == generation => main,
        _ => {
            let main = rustix::thread::gettid() == rustix::process::getpid();
            known.set(Some((generation, main)));
            main
        }
    })
}

/// Whether thread `tid` of this process sleeps in an untimed wait on a private futex, so that
/// only another thread of the process can wake it. False when it runs, waits in anything else,
/// or cannot be read.
pub fn sleeps_until_woken(tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
        .is_ok_and(|line| is_untimed_futex_wait(&line))
}

/// Whether a `/proc/<pid>/task/<tid>/syscall` line (the system call number, then its six
/// arguments in hex, then the stack and instruction pointers; `running` when the thread is not
/// in a call) shows `futex(uaddr, FUTEX_WAIT or FUTEX_WAIT_BITSET, val, NULL, ...)` on a private
/// futex. A shared one (no `FUTEX_PRIVATE_FLAG`) may live in memory another process can wake it
/// through (a process-shared semaphore), so it does not count.
pub fn is_untimed_futex_wait(line: &str) -> bool {
    const FUTEX_WAIT: u64 = 0;
    const FUTEX_WAIT_BITSET: u64 = 9;
    const FUTEX_PRIVATE_FLAG: u64 = 128;
    const FUTEX_CLOCK_REALTIME: u64 = 256;
    let mut fields = line.split_ascii_whitespace();
    let number = fields.next().and_then(|n| n.parse::<i64>().ok());
    if number != Some(i64::from(SYS_FUTEX)) {
        return false;
    }
    let args: Vec<u64> = fields
        .take(4)
        .filter_map(|arg| u64::from_str_radix(arg.strip_prefix("0x")?, 16).ok())
        .collect();
    let [_, op, _, timeout] = args[..] else {
        return false;
    };
    let command = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    let private = op & FUTEX_PRIVATE_FLAG != 0;
    (command == FUTEX_WAIT || command == FUTEX_WAIT_BITSET) && private && timeout == 0
}
