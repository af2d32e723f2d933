use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Barrier};
use std::thread;

/// A lock-like target: an owner and a "free" flag.
#[derive(Default)]
struct Owned {
    owner: AtomicU64,
    free: AtomicBool,
}

impl WaitTarget for Owned {
    fn owner(&self) -> Option<ThreadId> {
        match self.owner.load(Ordering::SeqCst) {
            0 => None,
            id => Some(ThreadId(id)),
        }
    }
    fn is_ready(&self, _ticket: u64) -> bool {
        self.free.load(Ordering::SeqCst)
    }
}

fn owned_by(id: ThreadId) -> Arc<Owned> {
    let target = Arc::new(Owned::default());
    target.owner.store(id.0, Ordering::SeqCst);
    target
}

#[test]
fn self_wait_on_own_lock_is_a_cycle_of_one() {
    let graph = WaitGraph::new(Mode::Raise);
    let me = ThreadId::current();
    let target = owned_by(me);
    // SAFETY: `published` is dropped before `target`.
    let published = unsafe { graph.publish(&*target, WaitKind::Lock, false, 0) };
    let cycle = graph.find_cycle(me).expect("a cycle");
    assert_eq!(cycle.len(), 1);
    assert_eq!(cycle[0].owner, Some(me));
    drop(published);
    assert!(graph.snapshot().is_empty());
}

#[test]
fn two_threads_waiting_on_each_other_form_a_cycle() {
    let graph = Arc::new(WaitGraph::new(Mode::Raise));
    let me = ThreadId::current();
    let (tx, rx) = std::sync::mpsc::channel();
    let parked = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let mine = Arc::new(Owned::default());
    let other = {
        let (graph, parked, release, mine) =
            (graph.clone(), parked.clone(), release.clone(), mine.clone());
        thread::spawn(move || {
            tx.send(ThreadId::current()).unwrap();
            let target = owned_by(me);
            // SAFETY: dropped before `target`.
            let published = unsafe { graph.publish(&*target, WaitKind::RLock, false, 0) };
            let _ = &mine;
            parked.wait();
            release.wait();
            drop(published);
        })
    };
    let other_id = rx.recv().unwrap();
    mine.owner.store(other_id.0, Ordering::SeqCst);
    parked.wait();
    // SAFETY: dropped before `mine`.
    let published = unsafe { graph.publish(&*mine, WaitKind::Lock, false, 0) };
    let cycle = graph.find_cycle(me).expect("a cycle");
    assert_eq!(
        cycle.iter().map(|e| e.waiter).collect::<Vec<_>>(),
        vec![me, other_id]
    );
    assert_eq!(cycle[0].kind, WaitKind::Lock);
    assert_eq!(cycle[1].kind, WaitKind::RLock);
    // Once the holder releases (the target is ready), it is a wake-up in flight, not a cycle.
    mine.free.store(true, Ordering::SeqCst);
    assert_eq!(graph.find_cycle(me), None);
    drop(published);
    release.wait();
    other.join().unwrap();
}

#[test]
fn a_chain_without_a_cycle_is_not_reported() {
    let graph = WaitGraph::new(Mode::Raise);
    let me = ThreadId::current();
    let target = owned_by(ThreadId(u64::MAX));
    // SAFETY: dropped before `target`.
    let _published = unsafe { graph.publish(&*target, WaitKind::Lock, false, 0) };
    assert_eq!(graph.find_cycle(me), None);
}

#[test]
fn stall_needs_every_live_thread_parked_and_untimed() {
    let graph = WaitGraph::new(Mode::Raise);
    let target = owned_by(ThreadId::current());
    // SAFETY: dropped before `target`.
    let published = unsafe { graph.publish(&*target, WaitKind::Lock, false, 0) };
    assert!(
        graph.find_stall(2).is_none(),
        "another live thread could still act"
    );
    let stall = graph.find_stall(1).expect("the only thread is parked");
    assert!(graph.confirm_stall(&stall).is_some());
    target.free.store(true, Ordering::SeqCst);
    assert!(
        graph.confirm_stall(&stall).is_none(),
        "a ready target is a wake-up in flight"
    );
    drop(published);
    // SAFETY: dropped before `target`.
    let _timed = unsafe { graph.publish(&*target, WaitKind::Lock, true, 0) };
    target.free.store(false, Ordering::SeqCst);
    assert!(graph.find_stall(1).is_none(), "a timed wait ends by itself");
}

#[test]
fn threads_that_all_wait_for_input_or_a_signal_are_not_a_stall() {
    let graph = WaitGraph::new(Mode::Raise);
    let event = Owned::default();
    let queue = Owned::default();
    let parked = Barrier::new(2);
    let judged = Barrier::new(2);
    thread::scope(|scope| {
        scope.spawn(|| {
            // SAFETY: dropped before `queue`, which outlives the scope.
            let _idle_worker = unsafe { graph.publish(&queue, WaitKind::Queue, false, 0) };
            parked.wait();
            judged.wait();
        });
        // SAFETY: dropped before `event`.
        let _main = unsafe { graph.publish(&event, WaitKind::Event, false, 0) };
        parked.wait();
        assert!(
            graph.find_stall(2).is_none(),
            "idle, waiting for input and a signal"
        );
        judged.wait();
    });
}

#[test]
fn an_ownerless_stall_with_one_wait_on_a_holder_is_a_stall() {
    let graph = WaitGraph::new(Mode::Raise);
    let me = ThreadId::current();
    let event = Owned::default();
    let running = owned_by(me);
    for (target, kind, stalled) in [
        (&event, WaitKind::Event, false),
        (&event, WaitKind::Future, false), // a future nobody runs: anybody may set it
        (&*running, WaitKind::Future, true), // a future a thread runs
        (&event, WaitKind::Join, true),
    ] {
        // SAFETY: dropped before the targets, at the end of each round.
        let _published = unsafe { graph.publish(target, kind, false, 0) };
        let stall = graph.find_stall(1);
        assert_eq!(stall.is_some(), stalled, "{kind:?}");
        if let Some(stall) = stall {
            assert!(graph.confirm_stall(&stall).is_some());
        }
    }
}

#[test]
fn a_new_wait_invalidates_a_suspected_stall() {
    let graph = WaitGraph::new(Mode::Raise);
    let target = owned_by(ThreadId::current());
    // SAFETY: dropped before `target`.
    let first = unsafe { graph.publish(&*target, WaitKind::Lock, false, 0) };
    let stall = graph.find_stall(1).unwrap();
    drop(first);
    // SAFETY: dropped before `target`.
    let _second = unsafe { graph.publish(&*target, WaitKind::Lock, false, 0) };
    assert!(graph.confirm_stall(&stall).is_none());
}

#[test]
fn a_wait_withdrawn_as_it_ends_counts_no_more_and_its_guard_leaves_the_next_one() {
    let graph = WaitGraph::new(Mode::Raise);
    let target = owned_by(ThreadId::current());
    // SAFETY: dropped before `target`.
    let first = unsafe { graph.publish(&*target, WaitKind::Lock, false, 0) };
    let stall = graph.find_stall(1).expect("the only thread is parked");
    // The wait succeeded (the lock taken: its target is not ready); the guard still lives.
    first.withdraw();
    assert!(graph.snapshot().is_empty());
    assert!(graph.find_stall(1).is_none());
    assert!(graph.confirm_stall(&stall).is_none());
    // SAFETY: dropped before `target`.
    let second = unsafe { graph.publish(&*target, WaitKind::Lock, false, 0) };
    drop(first);
    assert_eq!(
        graph.snapshot().len(),
        1,
        "the next wait of the thread stays"
    );
    drop(second);
    assert!(graph.snapshot().is_empty());
}

#[test]
fn no_stall_is_judged_while_a_thread_is_starting() {
    let graph = WaitGraph::new(Mode::Raise);
    let target = owned_by(ThreadId::current());
    // SAFETY: dropped before `target`.
    let _published = unsafe { graph.publish(&*target, WaitKind::Lock, false, 0) };
    let stall = graph.find_stall(1).expect("the only thread is parked");
    graph.thread_starting(true);
    assert!(graph.find_stall(1).is_none());
    assert!(graph.confirm_stall(&stall).is_none());
    graph.thread_starting(false);
    assert!(graph.confirm_stall(&stall).is_some());
}

#[test]
fn a_stall_is_reported_once_by_the_threads_that_confirm_it() {
    let graph = WaitGraph::new(Mode::Raise);
    let target = owned_by(ThreadId::current());
    // SAFETY: dropped before `target`.
    let _published = unsafe { graph.publish(&*target, WaitKind::Lock, false, 0) };
    let stall = graph.find_stall(1).unwrap();
    assert!(graph.confirm_stall(&stall).is_some());
    assert!(graph.confirm_stall(&stall).is_none());
}

/// Runs `body(me, other)` while another thread, `other`, is parked in the graph on a target
/// owned by `me`, published as `kind`.
fn with_other_parked(
    graph: &Arc<WaitGraph>,
    kind: WaitKind,
    body: impl FnOnce(ThreadId, ThreadId),
) {
    let me = ThreadId::current();
    let (tx, rx) = std::sync::mpsc::channel();
    let parked = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let other = {
        let (graph, parked, release) = (graph.clone(), parked.clone(), release.clone());
        thread::spawn(move || {
            tx.send(ThreadId::current()).unwrap();
            let target = owned_by(me);
            // SAFETY: dropped before `target`.
            let published = unsafe { graph.publish(&*target, kind, false, 0) };
            parked.wait();
            release.wait();
            drop(published);
        })
    };
    let other_id = rx.recv().unwrap();
    parked.wait();
    body(me, other_id);
    release.wait();
    other.join().unwrap();
}

#[test]
fn a_cycle_closed_by_a_reacquire_is_found_once_by_a_participant_that_looks() {
    let graph = Arc::new(WaitGraph::new(Mode::Raise));
    // The other thread re-takes a condition's lock, held by this one; this one then waits on a
    // lock the other holds. The re-acquire cannot fail, so this thread's look must report it.
    with_other_parked(&graph, WaitKind::Reacquire, |me, other| {
        let target = owned_by(other);
        // SAFETY: dropped before `target`.
        let published = unsafe { graph.publish(&*target, WaitKind::Lock, false, 0) };
        let cycle = graph.find_unraised_cycle(me).expect("an unraised cycle");
        assert_eq!(
            cycle.iter().map(|e| e.kind).collect::<Vec<_>>(),
            vec![WaitKind::Lock, WaitKind::Reacquire]
        );
        // Reported once, however many look.
        assert!(graph.find_unraised_cycle(me).is_none());
        assert!(graph.find_cycle(me).is_some());
        drop(published);
    });
}

#[test]
fn a_cycle_of_waits_that_can_fail_is_not_an_unraised_one() {
    // Such a cycle was reported when it formed, by the wait that closed it.
    let graph = Arc::new(WaitGraph::new(Mode::Raise));
    with_other_parked(&graph, WaitKind::Lock, |me, other| {
        let target = owned_by(other);
        // SAFETY: dropped before `target`.
        let published = unsafe { graph.publish(&*target, WaitKind::Lock, false, 0) };
        assert!(graph.find_cycle(me).is_some());
        assert!(graph.find_unraised_cycle(me).is_none());
        drop(published);
        // Nor one with a deadline on it, even through a re-acquire.
        let target = owned_by(other);
        // SAFETY: dropped before `target`.
        let published = unsafe { graph.publish(&*target, WaitKind::Reacquire, true, 0) };
        assert!(graph.find_unraised_cycle(me).is_none());
        drop(published);
    });
}
