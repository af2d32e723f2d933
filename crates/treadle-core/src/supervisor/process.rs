//! Starting a worker process and learning how it ended.
//!
//! A worker is a fresh interpreter, started by fork-and-exec from the supervisor's own thread:
//! between the two, the child (which runs no Rust code but async-signal-safe system calls) asks
//! for `SIGKILL` when that thread dies (`PR_SET_PDEATHSIG`, which survives `exec`), checks that
//! its parent is still alive (else the signal would never come), and moves its end of the channel
//! to descriptor 3. Nothing is forked but a process about to `exec`, so a parent with threads is
//! safe. Exits are watched through a pidfd, which `poll` reports readable when the process ends.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};

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
    child: Child,
    pidfd: Option<OwnedFd>,
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
        let pidfd = pidfd_open(child.id());
        Ok(Process { child, pidfd })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A descriptor that polls readable once the process has ended (`None` on kernels before
    /// 5.3; the supervisor then polls with `try_exit` on a short timer).
    pub(crate) fn pidfd(&self) -> Option<&OwnedFd> {
        self.pidfd.as_ref()
    }

    /// Sends `signal` to the process, unless it was already reaped.
    pub(crate) fn signal(&self, signal: i32) {
        // SAFETY: the process is our child and not yet reaped (reaping consumes `Process`), so
        // its pid cannot have been reused.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// How the process ended, if it has; reaps it.
    pub(crate) fn try_exit(&mut self) -> Option<Exit> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.into()),
            Ok(None) => None,
            Err(_) => Some(Exit::Code(-1)),
        }
    }

    /// Kills the process and waits for it.
    pub(crate) fn kill_and_reap(mut self) -> Exit {
        let _ = self.child.kill();
        self.child.wait().map(Exit::from).unwrap_or(Exit::Code(-1))
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
