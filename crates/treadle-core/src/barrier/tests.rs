use super::*;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

fn wait(barrier: &Barrier) -> Result<usize, BarrierError> {
    let arrival = barrier.arrive_until(None)?.expect("no deadline");
    let result = match arrival {
        Arrival::Last(index) => barrier.finish_action(true).map(|()| index),
        Arrival::Waiting(index) => barrier
            .await_release_until(None)
            .expect("no deadline")
            .map(|()| index),
    };
    barrier.leave();
    result
}

#[test]
fn indexes_are_distinct_over_many_rounds() {
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                (0..100)
                    .map(|_| wait(&barrier).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let rounds: Vec<Vec<usize>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for round in 0..100 {
        let mut seen: Vec<usize> = rounds.iter().map(|r| r[round]).collect();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 3]);
    }
    assert_eq!(barrier.n_waiting(), 0);
}

#[test]
fn abort_breaks_waiters() {
    let barrier = Arc::new(Barrier::new(2));
    let other = barrier.clone();
    let handle = thread::spawn(move || wait(&other));
    while barrier.n_waiting() < 1 {
        thread::sleep(Duration::from_millis(1));
    }
    barrier.abort();
    assert_eq!(handle.join().unwrap(), Err(BarrierError));
    assert!(barrier.is_broken());
    barrier.reset();
    assert!(!barrier.is_broken());
}

#[test]
fn failed_action_breaks_the_barrier() {
    let barrier = Barrier::new(1);
    assert_eq!(barrier.arrive_until(None), Ok(Some(Arrival::Last(0))));
    assert_eq!(barrier.finish_action(false), Err(BarrierError));
    barrier.leave();
    assert!(barrier.is_broken());
}

#[test]
fn timed_out_release_wait_can_be_resumed() {
    let barrier = Barrier::new(2);
    assert_eq!(barrier.arrive_until(None), Ok(Some(Arrival::Waiting(0))));
    let deadline = Instant::now() + Duration::from_millis(10);
    assert_eq!(barrier.await_release_until(Some(deadline)), None);
    assert_eq!(barrier.n_waiting(), 1);
}
