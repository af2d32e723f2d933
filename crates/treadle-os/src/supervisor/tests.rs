use super::*;
use crate::channel;
use crate::frame::{self, Header};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::Duration;

#[test]
fn header_round_trips() {
    let header = Header {
        len: 70_000,
        kind: frame::to_worker::TASK,
        fds: 2,
        task: u64::MAX - 5,
    };
    assert_eq!(Header::decode(&header.encode()), Some(header));
    assert_eq!(Header::decode(&[0; 15]), None);
}

#[test]
fn frame_errors_say_what_is_wrong_in_words() {
    let too_many = frame::encode(frame::to_worker::TASK, 1, b"", 256).unwrap_err();
    assert_eq!(
        too_many.to_string(),
        "it carries more than 255 file descriptors"
    );
    assert!(frame::FrameError::TooLarge.to_string().contains("4 GiB"));
}

#[test]
fn frame_refuses_too_many_descriptors() {
    assert_eq!(
        frame::encode(frame::to_worker::TASK, 1, b"", 256),
        Err(frame::FrameError::TooManyFds)
    );
}

#[test]
fn descriptors_travel_with_bytes() {
    let (a, b) = channel::socket_pair().unwrap();
    let (x, mut y) = std::os::unix::net::UnixStream::pair().unwrap();
    let sent = channel::send(&a, b"hello", &[OwnedFd::from(x)]).unwrap();
    assert_eq!(sent, 5);
    let mut buf = [0u8; 16];
    let mut fds = Vec::new();
    assert_eq!(channel::recv(&b, &mut buf, &mut fds).unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(fds.len(), 1);
    let mut passed = std::os::unix::net::UnixStream::from(fds.pop().unwrap());
    passed.write_all(b"!").unwrap();
    let mut one = [0u8; 1];
    std::io::Read::read_exact(&mut y, &mut one).unwrap();
    assert_eq!(&one, b"!");
}

fn config(script: &str) -> Config {
    Config {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        workers: 1,
        max_tasks_per_child: None,
        init: Vec::new(),
        prefetch: 1,
        origin: Origin::Fresh,
    }
}

fn poll_until(supervisor: &Supervisor, mut done: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        for event in supervisor.poll(Some(deadline)).unwrap_or_default() {
            let stop = done(&event);
            seen.push(event);
            if stop {
                return seen;
            }
        }
    }
    panic!("no matching event in 10 s: {seen:?}");
}

#[test]
fn workers_that_never_start_break_the_pool() {
    let supervisor = Supervisor::new(config("exit 3")).unwrap();
    let task = Task {
        id: 1,
        payload: b"x".to_vec(),
        buffers: Buffers::None,
        timeout: None,
    };
    supervisor.submit(task).unwrap();
    let events = poll_until(&supervisor, |e| matches!(e, Event::Broken { .. }));
    let Some(Event::Broken { id, reason }) = events.last() else {
        unreachable!()
    };
    assert_eq!(*id, 1);
    assert!(reason.contains("exit code 3"), "{reason}");
    assert!(matches!(
        supervisor.submit(Task {
            id: 2,
            payload: Vec::new(),
            buffers: Buffers::None,
            timeout: None
        }),
        Err(SubmitError::Broken(_))
    ));
}

#[test]
fn terminate_ends_every_worker_then_closes() {
    // A worker that never says it is ready: only `terminate` ends it.
    let supervisor = Supervisor::new(config("exec sleep 30")).unwrap();
    assert!(supervisor
        .poll(Some(Instant::now() + Duration::from_millis(50)))
        .is_none());
    assert_eq!(supervisor.pids().len(), 1);
    assert!(supervisor.terminate(Signal::KILL).is_empty());
    poll_until(&supervisor, |e| matches!(e, Event::Closed));
}
