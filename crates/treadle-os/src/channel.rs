//! The OS calls under a worker's channel: an anonymous `AF_UNIX` stream socket pair (one end
//! inherited by the worker, so no other process can connect to it), non-blocking `sendmsg` and
//! `recvmsg` that carry file descriptors as `SCM_RIGHTS`, and an `eventfd` that wakes a poller.
//!
//! All of it is rustix's safe wrappers: descriptors are `OwnedFd`s from the moment the kernel
//! hands them over, so none leaks and none is closed twice.

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::net::{
    recvmsg, sendmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage,
    RecvFlags, ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags,
    SocketType,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Most descriptors one `recvmsg` accepts (a frame carries at most one; frames sent together
/// carry at most the sender's batch limit).
const MAX_FDS_PER_READ: usize = 255;
/// Control-message bytes for that many descriptors.
const RECV_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FDS_PER_READ));
/// Descriptors one `sendmsg` attaches without allocating its control buffer.
const SEND_FDS_ON_STACK: usize = 32;

/// A connected pair of `AF_UNIX` stream sockets, both close-on-exec.
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// An `eventfd` that wakes whoever polls it: any thread may [`Waker::wake`] it; the poller
/// [`Waker::reset`]s it after its poll returned.
#[derive(Debug)]
pub struct Waker(OwnedFd);

impl Waker {
    /// A non-blocking, close-on-exec `eventfd`, not signalled.
    pub fn new() -> io::Result<Waker> {
        Ok(Waker(eventfd(
            0,
            EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
        )?))
    }

    /// Adds one to the counter, waking the poller. A full counter (`EAGAIN`) already means
    /// "wake".
    pub fn wake(&self) {
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    /// Resets the counter; `EAGAIN` (nothing pending) is fine.
    pub fn reset(&self) {
        let mut value = [0u8; 8];
        let _ = rustix::io::read(&self.0, &mut value);
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Sends as much of `bytes` as the socket takes now, with `fds` attached when given. Returns the
/// number of bytes sent (`WouldBlock` when none could be).
pub fn send<F: AsFd>(socket: impl AsFd, bytes: &[u8], fds: &[F]) -> io::Result<usize> {
    if fds.is_empty() {
        return send_with(socket, bytes, &mut SendAncillaryBuffer::default());
    }
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    let mut stack = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(SEND_FDS_ON_STACK))];
    let mut heap = Vec::new();
    let space = if fds.len() <= SEND_FDS_ON_STACK {
        &mut stack[..]
    } else {
        heap.resize(
            rustix::cmsg_space!(ScmRights(fds.len())),
            MaybeUninit::uninit(),
        );
        &mut heap[..]
    };
    let mut control = SendAncillaryBuffer::new(space);
    if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many file descriptors for one message",
        ));
    }
    send_with(socket, bytes, &mut control)
}

fn send_with(
    socket: impl AsFd,
    bytes: &[u8],
    control: &mut SendAncillaryBuffer<'_, '_, '_>,
) -> io::Result<usize> {
    Ok(sendmsg(
        socket,
        &[IoSlice::new(bytes)],
        control,
        SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
    )?)
}

/// Reads what the socket has now (up to `buf.len()` bytes), appending received descriptors to
/// `fds`. `Ok(0)` is end of stream; `WouldBlock` means nothing to read yet.
pub fn recv(socket: impl AsFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); RECV_SPACE];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(
        socket,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    )?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(passed) = message {
            fds.extend(passed);
        }
    }
    if got.flags.contains(ReturnFlags::CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "file descriptors were dropped in transit",
        ));
    }
    Ok(got.bytes)
}

/// Whether `fd` polls readable now, without waiting (a pidfd: whether its process ended).
pub fn readable_now(fd: impl AsFd) -> bool {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&zero)).is_ok_and(|ready| ready > 0)
        && fds[0].revents().contains(PollFlags::IN)
}

/// Waits until `fd` polls readable or `deadline` passes (`false`); an interrupted poll returns
/// early (`true` only if readable).
pub fn wait_readable(fd: impl AsFd, deadline: Option<std::time::Instant>) -> bool {
    let timeout = match deadline {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            Some(Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            }))
        }
        None => None,
    };
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    poll(&mut fds, timeout.as_ref()).is_ok_and(|ready| ready > 0) && !fds[0].revents().is_empty()
}
