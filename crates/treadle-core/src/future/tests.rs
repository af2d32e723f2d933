use super::*;
use std::thread;
use std::time::Duration;

struct Plain;
impl TaskTypes for Plain {
    type Job = &'static str;
    type Value = i32;
    type Callback = u8;
}

type Cell = FutureCell<Plain>;

#[test]
fn start_takes_the_job_once() {
    let cell = Cell::new(Some("job"));
    assert!(matches!(cell.start(), Start::Started(Some("job"))));
    assert!(matches!(cell.start(), Start::Invalid(Status::Running)));
    assert_eq!(cell.runner(), Some(ThreadId::current()));
}

#[test]
fn cancel_pending_hands_back_the_job_and_callbacks() {
    let cell = Cell::new(Some("job"));
    cell.add_callback(7).unwrap();
    let done = cell.cancel().unwrap().unwrap();
    assert_eq!(done.job, Some("job"));
    assert_eq!(done.callbacks, vec![7]);
    assert!(cell.is_done());
    assert!(matches!(cell.cancel(), Ok(None)));
    assert!(matches!(cell.start(), Start::WasCancelled));
    assert_eq!(cell.add_callback(8), Err(8));
}

#[test]
fn running_future_cannot_be_cancelled_but_can_be_interrupted() {
    let cell = Cell::new(Some("job"));
    cell.start();
    assert!(cell.cancel().is_err());
    assert!(!cell.is_interrupted());
    assert!(cell.interrupt(None).is_some());
    assert!(cell.is_interrupted());
    assert_eq!(cell.status(), Status::Cancelled);
    // The task's late outcome is given back, not stored.
    assert!(matches!(
        cell.finish(Outcome::Returned(1)),
        Err(Outcome::Returned(1))
    ));
}

#[test]
fn interrupt_with_an_outcome_finishes_the_future() {
    let cell = Cell::new(None);
    cell.start();
    cell.interrupt(Some(Outcome::Raised(9))).unwrap();
    assert_eq!(cell.status(), Status::Finished);
    cell.read(false, |_, outcome| {
        assert!(matches!(outcome, Some(Outcome::Raised(9))))
    });
}

#[test]
fn waiter_wakes_on_finish() {
    let cell = Arc::new(Cell::new(None));
    let waiter = {
        let cell = Arc::clone(&cell);
        thread::spawn(move || cell.wait(None))
    };
    thread::sleep(Duration::from_millis(20));
    cell.finish(Outcome::Returned(3)).unwrap();
    assert!(waiter.join().unwrap());
}

#[test]
fn wait_times_out_when_not_done() {
    let cell = Cell::new(None);
    assert!(!cell.wait(Some(Instant::now() + Duration::from_millis(10))));
}

#[test]
fn sinks_get_the_key_in_completion_order() {
    let sink = Arc::new(Completions::new());
    let a = Cell::new(None);
    let b = Cell::new(None);
    assert!(a.subscribe(&sink, 0));
    assert!(b.subscribe(&sink, 1));
    b.finish(Outcome::Returned(0)).unwrap();
    a.cancel().unwrap();
    assert_eq!(sink.pop(None), Some(1));
    assert_eq!(sink.pop(None), Some(0));
    assert_eq!(sink.pop(Some(Instant::now())), None);
    assert!(!a.subscribe(&sink, 0));
}

#[test]
fn a_lost_exception_is_reported_once_and_a_retrieved_one_never() {
    let lost = Cell::new(None);
    lost.finish(Outcome::Raised(1)).unwrap();
    assert!(lost.take_unreported_failure());
    assert!(!lost.take_unreported_failure());

    let seen = Cell::new(None);
    seen.finish(Outcome::Raised(1)).unwrap();
    seen.read(true, |_, _| ());
    assert!(!seen.take_unreported_failure());

    let returned = Cell::new(None);
    returned.finish(Outcome::Returned(1)).unwrap();
    assert!(!returned.take_unreported_failure());
}

#[test]
fn observed_is_reported_to_the_completer() {
    let cell = Cell::new(None);
    cell.observe();
    assert!(cell.finish(Outcome::Returned(0)).unwrap().observed);
}
