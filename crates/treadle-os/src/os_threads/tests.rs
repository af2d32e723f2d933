use super::*;

fn futex_line(op: u64, timeout: u64) -> String {
    format!(
        "{} 0x7fdac21e5ae0 {op:#x} 0x0 {timeout:#x} 0x0 0xffffffff 0x7ffd0 0x7f123",
        SYS_FUTEX
    )
}

#[test]
fn an_untimed_condvar_wait_sleeps_until_woken() {
    // glibc's pthread_cond_wait: FUTEX_WAIT_BITSET | PRIVATE | CLOCK_REALTIME, no timeout.
    assert!(is_untimed_futex_wait(&futex_line(0x189, 0)));
    assert!(is_untimed_futex_wait(&futex_line(0x80, 0))); // FUTEX_WAIT_PRIVATE
}

#[test]
fn a_timed_wait_a_wake_or_another_call_could_end_by_itself() {
    assert!(!is_untimed_futex_wait(&futex_line(0x189, 0x7ffd1234)));
    assert!(!is_untimed_futex_wait(&futex_line(0x81, 0))); // FUTEX_WAKE_PRIVATE
                                                           // A shared futex may be woken from another process (a process-shared semaphore).
    assert!(!is_untimed_futex_wait(&futex_line(0, 0)));
    assert!(!is_untimed_futex_wait(&futex_line(0x109, 0)));
    assert!(!is_untimed_futex_wait(
        "0 0x3 0x55da71de5140 0x2000 0x1000 0x0 0x0 0x7ffd 0x7f12"
    )); // read
    assert!(!is_untimed_futex_wait("running"));
    assert!(!is_untimed_futex_wait("-1 0x7ffd 0x7f12")); // blocked outside a call
    assert!(!is_untimed_futex_wait(""));
    assert!(!is_untimed_futex_wait(&format!("{} 0x1", SYS_FUTEX)));
}

#[test]
fn this_process_lists_its_threads_and_reads_a_sleeper() {
    use std::sync::{Arc, Condvar, Mutex};
    let me = current_thread_id();
    let ids = thread_ids().expect("Linux lists /proc/self/task");
    assert!(ids.contains(&me));
    // A thread parked on a condvar with no deadline is seen asleep until woken.
    let pair = Arc::new((Mutex::new((0_i32, false)), Condvar::new()));
    let theirs = Arc::clone(&pair);
    let sleeper = std::thread::spawn(move || {
        let (state, woken) = &*theirs;
        let mut guard = state.lock().unwrap();
        guard.0 = current_thread_id();
        woken.notify_all();
        while !guard.1 {
            guard = woken.wait(guard).unwrap();
        }
    });
    let (state, woken) = &*pair;
    let tid = {
        let mut guard = state.lock().unwrap();
        while guard.0 == 0 {
            guard = woken.wait(guard).unwrap();
        }
        guard.0
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sleeps_until_woken(tid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the sleeper never parked"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(!sleeps_until_woken(me)); // this thread runs
    state.lock().unwrap().1 = true;
    woken.notify_all();
    sleeper.join().unwrap();
}
