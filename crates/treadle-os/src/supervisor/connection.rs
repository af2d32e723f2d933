//! A live worker as the supervisor reaches it: its process and its end of the channel, with the
//! bytes waiting to be written to it and those read from it that do not yet make a frame.
//!
//! Writes are non-blocking: a frame the socket does not take at once waits in the outbox, and
//! frames queued together leave in one `sendmsg` (up to [`COALESCE_BYTES`] and
//! [`COALESCE_FDS`]). Descriptors travel with the first byte of the `sendmsg` that carries
//! them, so they arrive no later than their frame's header; the reader keeps them in order.

use super::state::{Link, SendFailure};
use crate::channel;
use crate::frame::{Header, HEADER_LEN};
use crate::process::{Exit, Process};
use rustix::process::Signal;
use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// Frames to one worker are written together up to this many bytes.
const COALESCE_BYTES: usize = 64 * 1024;
/// And up to this many descriptors.
const COALESCE_FDS: usize = 32;
/// Bytes read from a worker per `recvmsg`.
const READ_CHUNK: usize = 64 * 1024;

/// Bytes (and descriptors) waiting to be written to a worker, and the tasks whose frames they
/// hold.
#[derive(Debug)]
struct Outgoing {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
    sent: usize,
    tasks: Vec<u64>,
}

/// A worker's process and channel.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) process: Process,
    /// Shared with the poller's descriptor list while it polls unlocked.
    pub(crate) socket: Arc<OwnedFd>,
    /// Whether the worker closed the channel (end of stream, or a failed read).
    pub(crate) hung_up: bool,
    outbox: VecDeque<Outgoing>,
    inbox: Vec<u8>,
    inbox_fds: VecDeque<OwnedFd>,
    /// What one `recvmsg` reads into, made once: zeroing a fresh one per read cost more than
    /// the read of a tiny result.
    scratch: Box<[u8]>,
}

/// A frame read whole from a worker.
pub(crate) struct Frame {
    pub(crate) header: Header,
    pub(crate) payload: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Connection {
    /// A started worker, `socket` being the supervisor's end of its channel; `init` is the first
    /// frame it is sent. A worker that cannot be sent it is killed (it then failed to start).
    pub(crate) fn new(process: Process, socket: OwnedFd, init: Vec<u8>) -> Connection {
        let mut connection = Connection {
            process,
            socket: Arc::new(socket),
            hung_up: false,
            outbox: VecDeque::new(),
            inbox: Vec::new(),
            inbox_fds: VecDeque::new(),
            scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
        };
        connection.queue(init, Vec::new(), None);
        if connection.flush().is_err() {
            connection.process.signal(Signal::KILL);
        }
        connection
    }

    /// Whether frames wait for the socket to take them.
    pub(crate) fn has_outgoing(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// How the process ended, if it has (reaping it). With a pidfd, the process is asked only
    /// once the pidfd says it ended or the channel was closed; `pidfds_quiet`: no pidfd polled
    /// readable since the last look, so a worker with one that did not hang up is still alive.
    pub(crate) fn try_exit(&mut self, pidfds_quiet: bool) -> Option<Exit> {
        match self.process.pidfd() {
            Some(_) if !self.hung_up && pidfds_quiet => None,
            Some(pidfd) if !self.hung_up && !channel::readable_now(&**pidfd) => None,
            _ => self.process.try_exit(),
        }
    }

    /// Reads what the worker sent and returns the whole frames, in order; sets `hung_up` at the
    /// end of the stream. A read that does not fill the buffer took all there was: what comes
    /// later, the next poll sees.
    pub(crate) fn receive(&mut self) -> Vec<Frame> {
        let mut fds = Vec::new();
        loop {
            match channel::recv(&*self.socket, &mut self.scratch, &mut fds) {
                Ok(0) => {
                    self.hung_up = true;
                    break;
                }
                Ok(n) => {
                    self.inbox.extend_from_slice(&self.scratch[..n]);
                    self.inbox_fds.extend(fds.drain(..));
                    if n < self.scratch.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.hung_up = true;
                    break;
                }
            }
        }
        let mut frames = Vec::new();
        let mut at = 0;
        while let Some(header) = Header::decode(&self.inbox[at..]) {
            let end = at + HEADER_LEN + header.len as usize;
            if self.inbox.len() < end || self.inbox_fds.len() < header.fds as usize {
                break;
            }
            frames.push(Frame {
                header,
                payload: self.inbox[at + HEADER_LEN..end].to_vec(),
                fds: self.inbox_fds.drain(..header.fds as usize).collect(),
            });
            at = end;
        }
        self.inbox.drain(..at);
        frames
    }
}

impl Link for Connection {
    fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Queues a frame, joining it to the last queued one when neither has left yet.
    fn queue(&mut self, bytes: Vec<u8>, mut fds: Vec<OwnedFd>, task: Option<u64>) {
        if let Some(last) = self.outbox.back_mut() {
            if last.sent == 0
                && last.bytes.len() + bytes.len() <= COALESCE_BYTES
                && last.fds.len() + fds.len() <= COALESCE_FDS
            {
                last.bytes.extend_from_slice(&bytes);
                last.fds.append(&mut fds);
                last.tasks.extend(task);
                return;
            }
        }
        self.outbox.push_back(Outgoing {
            bytes,
            fds,
            sent: 0,
            tasks: task.into_iter().collect(),
        });
    }

    /// Writes queued frames until the socket is full. After a failed write nothing more is
    /// written: the stream may have stopped inside a frame, so what follows could never be read
    /// right; the state machine decides what becomes of the worker and its tasks.
    fn flush(&mut self) -> Result<bool, SendFailure> {
        while let Some(out) = self.outbox.front_mut() {
            let fds: &[OwnedFd] = if out.sent == 0 { &out.fds } else { &[] };
            match channel::send(&*self.socket, &out.bytes[out.sent..], fds) {
                Ok(n) => {
                    out.sent += n;
                    out.fds.clear();
                    if out.sent < out.bytes.len() {
                        return Ok(true);
                    }
                    self.outbox.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    let tasks = std::mem::take(&mut out.tasks);
                    self.outbox.clear();
                    return Err(SendFailure { error, tasks });
                }
            }
        }
        Ok(false)
    }

    fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }
}
