use super::{AtomicInt, Overflow};
use std::sync::Arc;
use std::thread;

#[test]
fn fetch_add_and_fetch_sub_return_the_value_before() {
    let n = AtomicInt::new(5);
    assert_eq!(n.fetch_add(3), Ok(5));
    assert_eq!(n.fetch_sub(10), Ok(8));
    assert_eq!(n.load(), -2);
}

#[test]
fn an_add_that_overflows_changes_nothing() {
    let n = AtomicInt::new(i64::MAX - 1);
    assert_eq!(
        n.fetch_add(2),
        Err(Overflow {
            current: i64::MAX - 1
        })
    );
    assert_eq!(n.load(), i64::MAX - 1);
    let n = AtomicInt::new(i64::MIN);
    assert_eq!(n.fetch_sub(1), Err(Overflow { current: i64::MIN }));
    assert_eq!(n.fetch_add(-1), Err(Overflow { current: i64::MIN }));
}

#[test]
fn compare_exchange_stores_only_over_the_expected_value() {
    let n = AtomicInt::new(1);
    assert_eq!(n.compare_exchange(2, 3), Err(1));
    assert_eq!(n.load(), 1);
    assert_eq!(n.compare_exchange(1, 3), Ok(1));
    assert_eq!(n.exchange(7), 3);
    n.store(9);
    assert_eq!(n.load(), 9);
}

#[test]
fn threads_adding_lose_no_update() {
    let n = Arc::new(AtomicInt::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let n = Arc::clone(&n);
            thread::spawn(move || {
                for _ in 0..100_000 {
                    n.fetch_add(1).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(n.load(), 400_000);
}
