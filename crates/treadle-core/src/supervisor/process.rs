//! Starting a worker process and learning how it ended.
//!
//! A worker is a fresh interpreter, started by fork-and-exec from the supervisor's own thread:
//! between the two, the child (which runs no Rust code but async-signal-safe system calls) asks
//! for `SIGKILL` when that thread dies (`PR_SET_PDEATHSIG`, which survives `exec`), checks that
//! its parent is still alive (else the signal would never come), and moves its end of the channel
//! to descriptor 3. Nothing is forked but a process about to `exec`, so a parent with threads is
//! safe. Exits are watched through a pidfd, which `poll` reports readable when the process ends.
//!
//! Or a worker is forked by a fork server ([`ForkServer`]), a copy of the parent made while it had
//! one thread; the worker is then the server's child, which reaps it when asked and says how it
//! ended. Its pidfd is what the supervisor watches and signals it through (a pidfd always names
//! the same process), so a fork server is used only where pidfds exist.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;

use super::fork_server::ForkServer;

/// The descriptor a worker finds its channel on.
pub const CHANNEL_FD: i32 = 3;

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Exit {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::Code(-1),
        }
    }
}

/// A running worker process.
#[derive(Debug)]
pub(crate) struct Process {
    pid: u32,
    pidfd: Option<OwnedFd>,
    origin: Origin,
}

#[derive(Debug)]
enum Origin {
    /// Our own child, started by fork-and-exec.
    Child(Child),
    /// A fork server's child; `ended` once the server reaped it.
    Forked {
        server: Arc<ForkServer>,
        ended: Option<Exit>,
    },
}

impl Process {
    /// Starts `program args...` with `channel` as its descriptor 3.
    pub(crate) fn spawn(
        program: &OsString,
        args: &[OsString],
        channel: &OwnedFd,
    ) -> io::Result<Process> {
        let channel = channel.as_raw_fd();
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        let mut command = Command::new(program);
        command.args(args);
        // SAFETY: the hook runs in the forked child before exec and only makes async-signal-safe
        // system calls (prctl, getppid, dup2, fcntl); it allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                if channel == CHANNEL_FD {
                    // dup2 onto itself would keep close-on-exec set: clear it instead.
                    if libc::fcntl(channel, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(channel, CHANNEL_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        let pid = child.id();
        let pidfd = pidfd_open(pid);
        Ok(Process {
            pid,
            pidfd,
            origin: Origin::Child(child),
        })
    }

    /// Has `server` fork a worker whose channel is `channel`.
    pub(crate) fn fork_from(server: &Arc<ForkServer>, channel: &OwnedFd) -> io::Result<Process> {
        let pid = server.spawn(channel)?;
        // The worker cannot be reaped (so its pid cannot be reused) before we ask the server.
        let Some(pidfd) = pidfd_open(pid) else {
            let error = io::Error::last_os_error();
            let _ = server.wait(pid);
            return Err(error);
        };
        Ok(Process {
            pid,
            pidfd: Some(pidfd),
            origin: Origin::Forked {
                server: server.clone(),
                ended: None,
            },
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// A descriptor that polls readable once the process has ended (`None` on kernels before
    /// 5.3; the supervisor then polls with `try_exit` on a short timer).
    pub(crate) fn pidfd(&self) -> Option<&OwnedFd> {
        self.pidfd.as_ref()
    }

    /// Sends `signal` to the process, unless it was already reaped.
    pub(crate) fn signal(&self, signal: i32) {
        match &self.origin {
            // SAFETY: the process is our child and not yet reaped (reaping consumes `Process`),
            // so its pid cannot have been reused.
            Origin::Child(child) => unsafe {
                libc::kill(child.id() as libc::pid_t, signal);
            },
            Origin::Forked { ended: None, .. } => {
                if let Some(pidfd) = &self.pidfd {
                    // SAFETY: pidfd_send_signal takes a pidfd, a signal and no info; a pidfd
                    // names one process for good, so no other process can be signalled.
                    unsafe {
                        libc::syscall(
                            libc::SYS_pidfd_send_signal,
                            pidfd.as_raw_fd(),
                            signal,
                            std::ptr::null::<libc::siginfo_t>(),
                            0,
                        )
                    };
                }
            }
            Origin::Forked { ended: Some(_), .. } => {}
        }
    }

    /// How the process ended, if it has; reaps it.
    pub(crate) fn try_exit(&mut self) -> Option<Exit> {
        match &mut self.origin {
            Origin::Child(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.into()),
                Ok(None) => None,
                Err(_) => Some(Exit::Code(-1)),
            },
            Origin::Forked {
                ended: Some(exit), ..
            } => Some(*exit),
            Origin::Forked { server, ended } => {
                if !super::pollin(self.pidfd.as_ref()) {
                    return None;
                }
                let exit = match server.wait(self.pid) {
                    Ok(status) => Exit::from(ExitStatus::from_raw(status)),
                    Err(_) => Exit::Code(-1),
                };
                *ended = Some(exit);
                Some(exit)
            }
        }
    }

    /// Kills the process and waits for it.
    pub(crate) fn kill_and_reap(mut self) -> Exit {
        match &mut self.origin {
            Origin::Child(child) => {
                let _ = child.kill();
                child.wait().map(Exit::from).unwrap_or(Exit::Code(-1))
            }
            Origin::Forked {
                ended: Some(exit), ..
            } => *exit,
            Origin::Forked { .. } => {
                self.signal(libc::SIGKILL);
                let Origin::Forked { server, .. } = &self.origin else {
                    unreachable!()
                };
                match server.wait(self.pid) {
                    Ok(status) => Exit::from(ExitStatus::from_raw(status)),
                    Err(_) => Exit::Code(-1),
                }
            }
        }
    }
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, no memory; it returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the syscall succeeded, so `fd` is a new descriptor owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// How many processes the kernel's OOM killer has killed in this process's memory cgroup, if the
/// cgroup says (v2 `memory.events`, or v1 `memory.oom_control`).
pub fn oom_kills() -> Option<u64> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut candidates = Vec::new();
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.is_empty() {
            candidates.push(format!("/sys/fs/cgroup{path}/memory.events"));
            candidates.push("/sys/fs/cgroup/memory.events".to_owned());
        } else if controllers.split(',').any(|c| c == "memory") {
            candidates.push(format!("/sys/fs/cgroup/memory{path}/memory.oom_control"));
            candidates.push("/sys/fs/cgroup/memory/memory.oom_control".to_owned());
        }
    }
    candidates
        .iter()
        .find_map(|file| std::fs::read_to_string(file).ok())
        .and_then(|text| oom_kill_count(&text))
}

/// The `oom_kill N` counter in a cgroup memory file.
pub fn oom_kill_count(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("oom_kill"))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}
