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
//! server). A request is a 12-byte header, `kind: i32, pid: i32, length: u32` little-endian
//! ([`REQUEST_FORMAT`]), then `length` bytes of payload; its descriptors travel as `SCM_RIGHTS`
//! with its first byte. The reply is 8 bytes, `value: i32, errno: i32` ([`REPLY_FORMAT`]): the
//! request's answer, or -1 and an errno. One request is in flight at a time (a mutex), so
//! replies come in order. The kinds:
//!
//! - [`SPAWN`] (a pool's worker) and [`PROCESS`] (a `treadle.multiprocessing.Process`'s child)
//!   fork a child that takes the parent's state at this moment. Their pid word is 0. Both start
//!   alike: the payload begins with the parent's state ([`ParentState`]: environment, umask,
//!   resource limits, credentials and privileges, one pickle made by
//!   `treadle.multiprocessing.fork_server.parent_state`, which is also what reads it, to its
//!   end), and the first descriptor is the parent's working directory (an `O_PATH` descriptor).
//!   What follows is the kind's own:
//!   - `SPAWN`: no more payload; one descriptor, the worker's end of its channel.
//!   - `PROCESS`: the child's start-up data (what the standard library's `forkserver` start
//!     method sends: the parent's preparation data, then the pickled process), and the
//!     descriptors that data names, in order.
//!
//!   The server's child takes the state (working directory first, credentials last, then it
//!   asks again for `SIGKILL` at the server's death, since a change of credentials clears that)
//!   and tells the server whether it could before the server replies: the child's pid, or -1
//!   and the errno of what failed (`EPERM` when the server cannot give the parent's credentials
//!   or would give more privilege than the parent has). The caller then starts a fresh
//!   interpreter, which inherits the parent as it is: a pool's supervisor its worker, a
//!   `Process` the standard library's spawned child. So no child of the server ever runs with
//!   the identity, directory or environment the parent had when the server was forked.
//! - [`WAIT`]: reap child `pid` (a worker or a process's child), waiting for it to end. No
//!   payload, no descriptors. Replies with its wait status.
//!
//! A new kind takes the next number and says what its payload and descriptors are; the header
//! stays.

use crate::channel;
use parking_lot::Mutex;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{waitpid, Pid, WaitOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Fork a pool's worker that takes the parent's state; the request carries its channel's
/// descriptor. Replies with its pid.
pub const SPAWN: i32 = 1;
/// Reap child `pid` (waiting for it to end). Replies with its wait status.
pub const WAIT: i32 = 2;
/// Fork a `treadle.multiprocessing.Process`'s child that takes the parent's state; the request
/// carries the child's start-up data and the descriptors it names. Replies with its pid.
pub const PROCESS: i32 = 3;
/// A request's header as Python's `struct` module spells it
/// (`treadle/multiprocessing/fork_server.py`): kind, pid, payload length.
pub const REQUEST_FORMAT: &str = "<iiI";
/// A reply's layout: value, errno.
pub const REPLY_FORMAT: &str = "<ii";

/// The parent's state for a child to take (what a [`SPAWN`] or [`PROCESS`] request starts with),
/// captured anew for each start.
#[derive(Debug)]
pub struct ParentState {
    /// What the server's child reads (pickled by the Python side).
    pub payload: Vec<u8>,
    /// The parent's working directory, as a descriptor.
    pub fds: Vec<OwnedFd>,
}

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

    /// Forks a worker whose channel is `channel` (which the worker finds by its number) and
    /// that takes the parent's `state`; returns the worker's pid.
    pub fn spawn(&self, channel: &OwnedFd, state: &ParentState) -> io::Result<u32> {
        self.fork(SPAWN, state, &[], &[channel.as_fd()])
    }

    /// Forks the child of a `Process`, which takes the parent's `state` and starts with `data`
    /// (its start-up data) and the descriptors `fds` (duplicated for it); returns its pid.
    pub fn spawn_process(
        &self,
        state: &ParentState,
        data: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<u32> {
        self.fork(PROCESS, state, data, fds)
    }

    /// Reaps child `pid`, waiting for it to end; returns its wait status.
    pub fn wait(&self, pid: u32) -> io::Result<i32> {
        self.request(WAIT, pid as i32, &[], &[])
    }

    /// A request of a kind that forks: the parent's state first, then the kind's own `data` and
    /// descriptors `fds`. Returns the child's pid.
    fn fork(
        &self,
        kind: i32,
        state: &ParentState,
        data: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<u32> {
        let descriptors: Vec<BorrowedFd<'_>> = state
            .fds
            .iter()
            .map(AsFd::as_fd)
            .chain(fds.iter().copied())
            .collect();
        let pid = self.request(kind, 0, &[&state.payload, data], &descriptors)?;
        u32::try_from(pid).map_err(|_| io::Error::other("the fork server sent a bad pid"))
    }

    fn request(
        &self,
        kind: i32,
        pid: i32,
        payload: &[&[u8]],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<i32> {
        if !self.alive() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the fork server is gone",
            ));
        }
        let socket = self.socket.lock();
        match exchange(&socket, kind, pid, payload, fds) {
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
    payload: &[&[u8]],
    fds: &[BorrowedFd<'_>],
) -> io::Result<Result<i32, i32>> {
    let size: usize = payload.iter().map(|part| part.len()).sum();
    let length = u32::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "request too large"))?;
    let mut request = Vec::with_capacity(12 + size);
    request.extend_from_slice(&kind.to_le_bytes());
    request.extend_from_slice(&pid.to_le_bytes());
    request.extend_from_slice(&length.to_le_bytes());
    for part in payload {
        request.extend_from_slice(part);
    }
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut sent = 0;
    while sent < request.len() {
        let attach: &[BorrowedFd<'_>] = if sent == 0 { fds } else { &[] };
        match channel::send(socket, &request[sent..], attach) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_for(socket, PollFlags::OUT, deadline)?
            }
            Err(e) => return Err(transport(e)),
        }
    }
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
