use super::*;
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

fn soon() -> Option<Instant> {
    Some(Instant::now() + Duration::from_millis(20))
}

fn later() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(10))
}

#[test]
fn fifo_gives_items_in_put_order() {
    let queue = Queue::new(Order::Fifo, 0);
    for i in 0..3 {
        queue.try_put(i).unwrap();
    }
    let got: Vec<i32> = (0..3).map(|_| queue.try_get().unwrap()).collect();
    assert_eq!(got, [0, 1, 2]);
}

#[test]
fn lifo_gives_newest_item_first() {
    let queue = Queue::new(Order::Lifo, 0);
    for i in 0..3 {
        queue.try_put(i).unwrap();
    }
    let got: Vec<i32> = (0..3).map(|_| queue.try_get().unwrap()).collect();
    assert_eq!(got, [2, 1, 0]);
}

#[test]
fn full_queue_hands_the_item_back() {
    let queue = Queue::new(Order::Fifo, 1);
    queue.try_put("a").unwrap();
    assert_eq!(queue.try_put("b"), Err(PutError::Full("b")));
    assert_eq!(queue.put_until("c", soon()), Err(PutError::Full("c")));
    assert_eq!(queue.len(), 1);
}

#[test]
fn empty_queue_times_out() {
    let queue: Queue<()> = Queue::new(Order::Fifo, 0);
    assert_eq!(queue.try_get(), Err(GetError::Empty));
    assert_eq!(queue.get_until(soon()), Err(GetError::Empty));
}

#[test]
fn blocked_get_wakes_on_put() {
    let queue = Arc::new(Queue::new(Order::Fifo, 0));
    let getter = {
        let queue = queue.clone();
        thread::spawn(move || queue.get_until(later()))
    };
    thread::sleep(Duration::from_millis(20));
    queue.try_put(7).unwrap();
    assert_eq!(getter.join().unwrap(), Ok(7));
}

#[test]
fn blocked_put_wakes_on_get() {
    let queue = Arc::new(Queue::new(Order::Fifo, 1));
    queue.try_put(1).unwrap();
    let putter = {
        let queue = queue.clone();
        thread::spawn(move || queue.put_until(2, later()))
    };
    thread::sleep(Duration::from_millis(20));
    assert_eq!(queue.try_get(), Ok(1));
    assert_eq!(putter.join().unwrap(), Ok(()));
    assert_eq!(queue.try_get(), Ok(2));
}

#[test]
fn task_done_past_zero_is_an_error() {
    let queue = Queue::new(Order::Fifo, 0);
    assert_eq!(queue.task_done(), Err(TaskDoneError::TooMany));
    queue.try_put(()).unwrap();
    queue.try_get().unwrap();
    assert_eq!(queue.task_done(), Ok(()));
    assert_eq!(queue.task_done(), Err(TaskDoneError::TooMany));
}

#[test]
fn join_waits_for_every_task_done() {
    let queue = Arc::new(Queue::new(Order::Fifo, 0));
    queue.try_put(1).unwrap();
    queue.try_put(2).unwrap();
    assert_eq!(queue.join_until(soon()), Ok(false));
    let worker = {
        let queue = queue.clone();
        thread::spawn(move || {
            while let Ok(_item) = queue.get_until(soon()) {
                queue.task_done().unwrap();
            }
        })
    };
    assert_eq!(queue.join_until(later()), Ok(true));
    worker.join().unwrap();
}

#[test]
fn shutdown_fails_puts_and_drains_before_failing_gets() {
    let queue = Queue::new(Order::Fifo, 0);
    queue.try_put(1).unwrap();
    assert_eq!(queue.shutdown(false), Ok(vec![]));
    assert_eq!(queue.try_put(2), Err(PutError::ShutDown(2)));
    assert_eq!(queue.get_until(later()), Ok(1));
    assert_eq!(queue.get_until(later()), Err(GetError::ShutDown));
}

#[test]
fn immediate_shutdown_discards_items_and_their_tasks() {
    let queue = Queue::new(Order::Fifo, 0);
    queue.try_put(1).unwrap();
    queue.try_put(2).unwrap();
    assert_eq!(queue.shutdown(true), Ok(vec![1, 2]));
    assert_eq!(queue.unfinished_tasks(), 0);
    assert_eq!(queue.join_until(soon()), Ok(true));
    assert_eq!(queue.try_get(), Err(GetError::ShutDown));
}

#[test]
fn shutdown_wakes_blocked_getters_and_putters() {
    let empty = Arc::new(Queue::<i32>::new(Order::Fifo, 0));
    let full = Arc::new(Queue::new(Order::Fifo, 1));
    full.try_put(0).unwrap();
    let getter = {
        let empty = empty.clone();
        thread::spawn(move || empty.get_until(later()))
    };
    let putter = {
        let full = full.clone();
        thread::spawn(move || full.put_until(1, later()))
    };
    thread::sleep(Duration::from_millis(20));
    empty.shutdown(false).unwrap();
    full.shutdown(false).unwrap();
    assert_eq!(getter.join().unwrap(), Err(GetError::ShutDown));
    assert_eq!(putter.join().unwrap(), Err(PutError::ShutDown(1)));
}

#[test]
fn put_many_fills_free_slots_and_leaves_the_rest() {
    let queue = Queue::new(Order::Fifo, 3);
    queue.try_put(0).unwrap();
    let mut items: VecDeque<i32> = (1..6).collect();
    assert_eq!(queue.put_many_until(&mut items, false, None), Ok(2));
    assert_eq!(items, [3, 4, 5]);
    assert_eq!(
        queue.put_many_until(&mut items, false, None),
        Err(PutError::Full(()))
    );
    assert_eq!(queue.unfinished_tasks(), 3);
}

#[test]
fn get_many_takes_at_most_max_items() {
    let queue = Queue::new(Order::Fifo, 0);
    let mut items: VecDeque<i32> = (0..5).collect();
    queue.put_many_until(&mut items, true, None).unwrap();
    let mut out = Vec::new();
    assert_eq!(queue.get_many_until(3, &mut out, true, None), Ok(3));
    assert_eq!(queue.get_many_until(3, &mut out, true, None), Ok(2));
    assert_eq!(out, [0, 1, 2, 3, 4]);
    assert_eq!(
        queue.get_many_until(3, &mut out, true, soon()),
        Err(GetError::Empty)
    );
}

#[test]
fn growing_maxsize_releases_blocked_putter() {
    let queue = Arc::new(Queue::new(Order::Fifo, 1));
    queue.try_put(0).unwrap();
    let putter = {
        let queue = queue.clone();
        thread::spawn(move || queue.put_until(1, later()))
    };
    thread::sleep(Duration::from_millis(20));
    queue.set_maxsize(2);
    assert_eq!(putter.join().unwrap(), Ok(()));
    assert_eq!(queue.len(), 2);
}

#[test]
fn many_producers_and_consumers_lose_and_duplicate_nothing() {
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 5_000;
    let queue = Arc::new(Queue::new(Order::Fifo, 16));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let queue = queue.clone();
            thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    let mut item = p * PER_PRODUCER + i;
                    // Short random-ish deadlines exercise the timed-out paths too.
                    while let Err(PutError::Full(back)) =
                        queue.put_until(item, Some(Instant::now() + Duration::from_micros(50)))
                    {
                        item = back;
                    }
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let queue = queue.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match queue.get_until(Some(Instant::now() + Duration::from_micros(70))) {
                        Ok(item) => got.push(item),
                        Err(GetError::ShutDown) => return got,
                        Err(GetError::Empty) => {}
                        Err(GetError::Diverted) => unreachable!("never diverted"),
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    queue.shutdown(false).unwrap();
    let mut all: Vec<usize> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..PRODUCERS * PER_PRODUCER).collect::<Vec<_>>());
}

#[test]
fn a_diverted_queue_refuses_every_operation_but_the_raw_storage_steps() {
    let queue = Queue::new(Order::Fifo, 2);
    queue.try_put(1).unwrap();
    queue.try_put(2).unwrap();
    queue.task_done().unwrap();
    assert_eq!(
        queue.divert(),
        Some(Handover {
            unfinished_tasks: 1,
            shut_down: false
        })
    );
    assert_eq!(queue.divert(), None, "once");
    assert_eq!(queue.try_put(3), Err(PutError::Diverted(3)));
    assert_eq!(queue.try_get(), Err(GetError::Diverted));
    assert_eq!(queue.task_done(), Err(TaskDoneError::Diverted));
    assert_eq!(queue.join_until(soon()), Err(Diverted));
    assert_eq!(queue.shutdown(false), Err(Diverted));
    let mut more = VecDeque::from([3]);
    assert_eq!(
        queue.put_many_until(&mut more, false, None),
        Err(PutError::Diverted(()))
    );
    // The items stay, for the monitor's storage steps.
    assert_eq!(queue.len(), 2);
    queue.push_raw(3);
    assert_eq!(queue.pop_raw(), Some(1));
    assert_eq!(queue.len(), 2);
}

#[test]
fn diverting_wakes_the_parked_threads_to_be_told() {
    let full = Arc::new(Queue::<u32>::new(Order::Fifo, 1));
    full.try_put(0).unwrap();
    let empty = Arc::new(Queue::<u32>::new(Order::Fifo, 0));
    let putter = thread::spawn({
        let full = full.clone();
        move || full.put_until(1, None)
    });
    let joiner = thread::spawn({
        let full = full.clone();
        move || full.join_until(None)
    });
    let getter = thread::spawn({
        let empty = empty.clone();
        move || empty.get_until(None)
    });
    thread::sleep(Duration::from_millis(50));
    assert!(full.divert().is_some());
    assert!(empty.divert().is_some());
    assert_eq!(putter.join().unwrap(), Err(PutError::Diverted(1)));
    assert_eq!(joiner.join().unwrap(), Err(Diverted));
    assert_eq!(getter.join().unwrap(), Err(GetError::Diverted));
}
