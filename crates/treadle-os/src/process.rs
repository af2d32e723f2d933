//! Starting a worker process and learning how it ended.
//!
//! A worker is a fresh interpreter, started by fork-and-exec from the supervisor's own thread:
//! between the two, the child (which runs no Rust code but async-signal-safe system calls) asks
//! for `SIGKILL` when that thread dies (`PR_SET_PDEATHSIG`, which survives `exec`), checks that
//! its parent is still alive (else the signal would never come), and moves its end of the channel
//! to descriptor 3. Nothing is forked but a process about to `exec`, so a parent with threads is
//! safe. Exits are watched through a pidfd, which `poll` reports readable when the process ends.
//! Everything is a rustix call; the one `unsafe` is `pre_exec` itself.
//!
//! Or a worker is forked by a fork server ([`ForkServer`]), a copy of the parent made while it had
//! one thread, and takes the parent's state of the moment (working directory, environment,
//! credentials...); the worker is then the server's child, which reaps it when asked and says how
//! it ended. Its pidfd is what the supervisor watches and signals it through (a pidfd always
//! names the same process), so a fork server is used only where pidfds exist.
//!
//! Or, when the pool's caller asked for the `fork` start method, the binding forks this process
//! itself (in Python, so that at-fork handlers run) and the worker is [`Process::adopt`]ed: our
//! child, watched, signalled and reaped through its pidfd (`waitid(P_PIDFD)`).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;

pub use rustix::process::Signal;
use rustix::process::{
    getpid, getppid, kill_process, pidfd_open, pidfd_send_signal, set_parent_process_death_signal,
    waitid, Pid, PidfdFlags, WaitId, WaitIdOptions, WaitIdStatus,
};

use crate::channel::readable_now;
use crate::fork_server::{ForkServer, ParentState};

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

impl Exit {
    /// From a wait status as `waitpid` reports it.
    pub fn from_wait_status(status: i32) -> Exit {
        Exit::from(ExitStatus::from_raw(status))
    }

    fn from_waitid(status: &WaitIdStatus) -> Exit {
        match (status.exit_status(), status.terminating_signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::Code(-1),
        }
    }

    /// Whether the process ended by its own doing (an exit, or a fault: a crash, an abort, a
    /// resource limit), rather than by a signal sent to it from outside (`SIGKILL`, `SIGTERM`,
    /// ...). A worker that ends so before it is ready failed to start; one killed from outside
    /// did not.
    pub fn by_its_own_doing(self) -> bool {
        const FAULTS: [Signal; 9] = [
            Signal::SEGV,
            Signal::BUS,
            Signal::ILL,
            Signal::FPE,
            Signal::ABORT,
            Signal::SYS,
            Signal::TRAP,
            Signal::XCPU,
            Signal::XFSZ,
        ];
        match self {
            Exit::Code(_) => true,
            Exit::Signal(signal) => FAULTS.iter().any(|fault| fault.as_raw() == signal),
        }
    }

    /// "exit code 3" or "signal 9".
    pub fn describe(self) -> String {
        match self {
            Exit::Code(code) => format!("exit code {code}"),
            Exit::Signal(signal) => format!("signal {signal}"),
        }
    }
}

/// Asks for `SIGKILL` when this process's parent (thread) dies, then checks that the parent is
/// still `parent`: false if it died already (the signal would never come).
pub fn die_with_parent(parent: i32) -> io::Result<bool> {
    set_parent_process_death_signal(Some(Signal::KILL))?;
    Ok(getppid().map_or(0, |pid| pid.as_raw_nonzero().get()) == parent)
}

/// A running worker process.
#[derive(Debug)]
pub(crate) struct Process {
    pid: u32,
    pidfd: Option<Arc<OwnedFd>>,
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
    /// Our own child, forked by the binding; `ended` once reaped.
    Adopted { ended: Option<Exit> },
}

impl Process {
    /// Starts `program args...` with `channel` as its descriptor 3.
    pub(crate) fn spawn(
        program: &OsString,
        args: &[OsString],
        channel: &OwnedFd,
    ) -> io::Result<Process> {
        // The child's copy: `dup2` onto CHANNEL_FD clears close-on-exec on the new number, and
        // the copy is never that number (the original holds it, if anything does).
        let channel = channel.try_clone()?;
        let parent = getpid();
        let mut command = Command::new(program);
        command.args(args);
        // SAFETY: the hook runs in the forked child before exec and only makes async-signal-safe
        // system calls (prctl, getppid, dup2); it allocates nothing and takes no lock. The
        // `OwnedFd` made for CHANNEL_FD is never dropped (`ManuallyDrop`): `dup2` only needs a
        // number to replace, and the child's descriptor 3 is whatever it inherited, or nothing.
        unsafe {
            command.pre_exec(move || {
                set_parent_process_death_signal(Some(Signal::KILL))?;
                if getppid() != Some(parent) {
                    return Err(io::Error::other("the parent process died"));
                }
                let mut target = std::mem::ManuallyDrop::new(OwnedFd::from_raw_fd(CHANNEL_FD));
                rustix::io::dup2(&channel, &mut target)?;
                Ok(())
            });
        }
        let child = command.spawn()?;
        let pid = child.id();
        let pidfd = pidfd_of(pid).ok().map(Arc::new);
        Ok(Process {
            pid,
            pidfd,
            origin: Origin::Child(child),
        })
    }

    /// Has `server` fork a worker whose channel is `channel` and that takes the parent's `state`.
    pub(crate) fn fork_from(
        server: &Arc<ForkServer>,
        channel: &OwnedFd,
        state: &ParentState,
    ) -> io::Result<Process> {
        let pid = server.spawn(channel, state)?;
        // The worker cannot be reaped (so its pid cannot be reused) before we ask the server.
        let pidfd = match pidfd_of(pid) {
            Ok(pidfd) => pidfd,
            Err(error) => {
                let _ = server.wait(pid);
                return Err(error);
            }
        };
        Ok(Process {
            pid,
            pidfd: Some(Arc::new(pidfd)),
            origin: Origin::Forked {
                server: server.clone(),
                ended: None,
            },
        })
    }

    /// Takes charge of `pid`, a child this process forked (and no one else reaps).
    pub(crate) fn adopt(pid: u32) -> io::Result<Process> {
        let pidfd = match pidfd_of(pid) {
            Ok(pidfd) => pidfd,
            Err(error) => {
                // Without a pidfd it cannot be watched: end it rather than leave it behind.
                if let Some(pid) = pid_of(pid) {
                    let _ = kill_process(pid, Signal::KILL);
                    let _ =
                        rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
                }
                return Err(error);
            }
        };
        Ok(Process {
            pid,
            pidfd: Some(Arc::new(pidfd)),
            origin: Origin::Adopted { ended: None },
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// A descriptor that polls readable once the process has ended (`None` on kernels before
    /// 5.3; the supervisor then polls with `try_exit` on a short timer).
    pub(crate) fn pidfd(&self) -> Option<&Arc<OwnedFd>> {
        self.pidfd.as_ref()
    }

    /// Sends `signal` to the process, unless it was already reaped.
    pub(crate) fn signal(&self, signal: Signal) {
        match &self.origin {
            // The process is our child and not yet reaped (reaping consumes `Process`), so its
            // pid cannot have been reused.
            Origin::Child(child) => {
                if let Some(pid) = pid_of(child.id()) {
                    let _ = kill_process(pid, signal);
                }
            }
            // A pidfd names one process for good, so no other process can be signalled.
            Origin::Forked { ended: None, .. } | Origin::Adopted { ended: None } => {
                if let Some(pidfd) = &self.pidfd {
                    let _ = pidfd_send_signal(&**pidfd, signal);
                }
            }
            Origin::Forked { ended: Some(_), .. } | Origin::Adopted { ended: Some(_) } => {}
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
                if !self.pidfd.as_ref().map_or(true, |fd| readable_now(&**fd)) {
                    return None;
                }
                let exit = server
                    .wait(self.pid)
                    .map_or(Exit::Code(-1), Exit::from_wait_status);
                *ended = Some(exit);
                Some(exit)
            }
            Origin::Adopted { ended: Some(exit) } => Some(*exit),
            Origin::Adopted { ended } => {
                let pidfd = self.pidfd.as_ref()?;
                let exit = match waitid(WaitId::PidFd(pidfd.as_fd()), exited(true)) {
                    Ok(Some(status)) => Exit::from_waitid(&status),
                    Ok(None) => return None,
                    // Reaped by someone else (an `os.wait()` in the program): how is unknown.
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
                self.signal(Signal::KILL);
                let Origin::Forked { server, .. } = &self.origin else {
                    unreachable!()
                };
                server
                    .wait(self.pid)
                    .map_or(Exit::Code(-1), Exit::from_wait_status)
            }
            Origin::Adopted { ended: Some(exit) } => *exit,
            Origin::Adopted { ended: None } => {
                self.signal(Signal::KILL);
                let Some(pidfd) = &self.pidfd else {
                    return Exit::Code(-1);
                };
                match waitid(WaitId::PidFd(pidfd.as_fd()), exited(false)) {
                    Ok(Some(status)) => Exit::from_waitid(&status),
                    _ => Exit::Code(-1),
                }
            }
        }
    }
}

fn exited(no_hang: bool) -> WaitIdOptions {
    if no_hang {
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG
    } else {
        WaitIdOptions::EXITED
    }
}

fn pid_of(pid: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(pid).ok()?)
}

fn pidfd_of(pid: u32) -> io::Result<OwnedFd> {
    let pid = pid_of(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(pidfd_open(pid, PidfdFlags::empty())?)
}
