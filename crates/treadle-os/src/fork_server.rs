//! The client side of a fork server: a copy of the parent process, forked while the parent had
//! one thread, that forks workers on request (`python/treadle/multiprocessing/fork_server.py` is the server).
//!
//! Forking a process that has threads is unsafe (a lock another thread held stays held forever in
//! the child), so a parent with threads never forks; but a process forked from it while it had one
//! thread can fork again at any time, in a few hundred microseconds, where a fresh interpreter takes
//! tens of milliseconds. Workers are the fork server's children: it reaps one only when asked
//! ([`ForkServer::wait`]), so a worker's pid cannot be reused while its supervisor still knows it,
//! and the supervisor learns how it ended from the server.
//!
//! Protocol, over an anonymous `AF_UNIX` stream socket pair (so no other process can reach the
//! server): a request is 8 bytes, `kind: i32, pid: i32` little-endian; a `SPAWN` request carries
//! the worker's end of its channel as `SCM_RIGHTS`; a `PROCESS` request (a
//! `treadle.multiprocessing.Process`'s child) is followed by the child's start-up data (its
//! length in place of the pid) and carries the descriptors the data names, so that the child
//! has all it needs the moment it is forked. The reply is 8 bytes, `value: i32, errno: i32`:
//! the new worker's pid (`SPAWN`) or its wait status (`WAIT`), or -1 and an errno. One request is
//! in flight at a time (a mutex), so replies come in order.

use crate::channel;
use parking_lot::Mutex;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{waitpid, Pid, WaitOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Fork a worker; the request carries its channel's descriptor. Replies with its pid.
pub const SPAWN: i32 = 1;
/// Reap worker `pid` (waiting for it to end). Replies with its wait status.
pub const WAIT: i32 = 2;
/// Fork a `treadle.multiprocessing.Process`'s child: the request's second word is the length of
/// the child's start-up data, which follows it; the descriptors it names come with the request.
/// Replies with the child's pid.
pub const PROCESS: i32 = 3;
/// A request's and a reply's layout as Python's `struct` module spells it
/// (`treadle/multiprocessing/fork_server.py`).
pub const MESSAGE_FORMAT: &str = "<ii";

/// How long a reply may take before the server is given up for dead.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to a fork server, shared by every pool of the process.
#[derive(Debug)]
pub struct ForkServer {
    socket: Mutex<OwnedFd>,
    pid: u32,
    dead: AtomicBool,
}

impl ForkServer {
    /// A client for the server `pid` at the other end of `socket`.
    pub fn new(socket: OwnedFd, pid: u32) -> ForkServer {
        ForkServer {
            socket: Mutex::new(socket),
            pid,
            dead: AtomicBool::new(false),
        }
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the server still answers (false once a request failed).
    pub fn alive(&self) -> bool {
        !self.dead.load(Ordering::Relaxed)
    }

    /// Forks a worker whose channel is `channel` (which the worker finds by its number); returns
    /// the worker's pid.
    pub fn spawn(&self, channel: &OwnedFd) -> io::Result<u32> {
        let pid = self.request(SPAWN, 0, &[channel.as_fd()], &[])?;
        u32::try_from(pid).map_err(|_| io::Error::other("the fork server sent a bad pid"))
    }

    /// Forks the child of a `Process`, which starts with `data` (its start-up data) and the
    /// descriptors `fds` (duplicated for it); returns the child's pid.
    pub fn spawn_process(&self, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<u32> {
        let length = i32::try_from(data.len())
            .map_err(|_| io::Error::other("a process's start-up data is too large"))?;
        let pid = self.request(PROCESS, length, fds, data)?;
        u32::try_from(pid).map_err(|_| io::Error::other("the fork server sent a bad pid"))
    }

    /// Reaps worker `pid`, waiting for it to end; returns its wait status.
    pub fn wait(&self, pid: u32) -> io::Result<i32> {
        self.request(WAIT, pid as i32, &[], &[])
    }

    fn request(&self, kind: i32, pid: i32, fds: &[BorrowedFd<'_>], data: &[u8]) -> io::Result<i32> {
        if !self.alive() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the fork server is gone",
            ));
        }
        let socket = self.socket.lock();
        match exchange(&socket, kind, pid, fds, data) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(errno)) => Err(io::Error::from_raw_os_error(errno)),
            Err(e) => {
                // The conversation is lost: later requests go elsewhere. The server is our child;
                // if it ended, reap it.
                self.dead.store(true, Ordering::Relaxed);
                if let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) {
                    let _ = waitpid(Some(pid), WaitOptions::NOHANG);
                }
                Err(e)
            }
        }
    }
}

/// Sends one request and reads its reply: `Ok(Err(errno))` when the server reported a failure
/// of this request, `Err` when the server cannot be talked to.
fn exchange(
    socket: &OwnedFd,
    kind: i32,
    pid: i32,
    fds: &[BorrowedFd<'_>],
    data: &[u8],
) -> io::Result<Result<i32, i32>> {
    let mut request = Vec::with_capacity(8 + data.len());
    request.extend_from_slice(&kind.to_le_bytes());
    request.extend_from_slice(&pid.to_le_bytes());
    request.extend_from_slice(data);
    let fds: Vec<OwnedFd> = fds
        .iter()
        .map(|fd| fd.try_clone_to_owned())
        .collect::<io::Result<_>>()?;
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut sent = 0;
    while sent < request.len() {
        let attach: &[OwnedFd] = if sent == 0 { &fds } else { &[] };
        match channel::send(socket, &request[sent..], attach) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_for(socket, PollFlags::OUT, deadline)?
            }
            Err(e) => return Err(transport(e)),
        }
    }
    drop(fds);
    let mut reply = [0u8; 8];
    let mut got = 0;
    let mut passed = Vec::new();
    while got < reply.len() {
        match channel::recv(socket, &mut reply[got..], &mut passed) {
            Ok(0) => return Err(transport(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_for(socket, PollFlags::IN, deadline)?
            }
            Err(e) => return Err(transport(e)),
        }
    }
    let value = i32::from_le_bytes([reply[0], reply[1], reply[2], reply[3]]);
    let errno = i32::from_le_bytes([reply[4], reply[5], reply[6], reply[7]]);
    Ok(if value < 0 { Err(errno) } else { Ok(value) })
}

fn transport(e: io::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        format!("the fork server is gone: {e}"),
    )
}

fn wait_for(socket: &OwnedFd, events: PollFlags, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(transport(io::ErrorKind::TimedOut.into()));
        }
        let timeout = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        match poll(&mut [PollFd::new(socket, events)], Some(&timeout)) {
            Ok(ready) if ready > 0 => return Ok(()),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(transport(e.into())),
        }
    }
}
