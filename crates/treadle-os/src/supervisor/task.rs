//! What the supervisor is given and what it answers: a [`Task`], the [`Event`]s that say what
//! became of tasks (and of the pool), why a submission was refused, what a cancellation did.

use crate::frame::FrameError;
use crate::process::Exit;
use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

/// A task to run: its id (chosen by the caller, unique in the pool), its pickled payload, its
/// large buffers, and its time limit.
#[derive(Debug)]
pub struct Task {
    /// The caller's id for it.
    pub id: u64,
    /// The frame payload.
    pub payload: Vec<u8>,
    /// The buffers its payload left out of band (pickle protocol 5), in order.
    pub buffers: Buffers,
    /// How long it may run once started.
    pub timeout: Option<Duration>,
}

/// Bytes a task carries out of band, lent by their owner (a Python buffer) for as long as the
/// task needs them.
pub trait OutOfBand: Send + Sync {
    /// The bytes.
    fn bytes(&self) -> &[u8];
}

/// The buffers one task lends, shared between the task and the poller packing them.
pub type LentBuffers = Arc<[Box<dyn OutOfBand>]>;

/// A task's large buffers: lent until a worker is about to take the task, then copied into one
/// shared-memory segment (`segment.rs`), which goes with the task each time it is sent. So a
/// queued task holds no copy and no descriptor, and a worker holds a bounded number of them.
#[derive(Default)]
pub enum Buffers {
    /// None.
    #[default]
    None,
    /// Lent by their owner; the poller packs them before the task is sent.
    Lent(LentBuffers),
    /// Packed into this segment.
    Packed(OwnedFd),
}

impl Buffers {
    /// Whether the task carries large buffers.
    pub(crate) fn any(&self) -> bool {
        !matches!(self, Buffers::None)
    }
}

impl fmt::Debug for Buffers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Buffers::None => f.write_str("None"),
            Buffers::Lent(buffers) => write!(f, "Lent({} buffers)", buffers.len()),
            Buffers::Packed(fd) => f.debug_tuple("Packed").field(fd).finish(),
        }
    }
}

/// What happened to a task (or the pool), for the binding to act on.
#[derive(Debug)]
pub enum Event {
    /// The task returned: the pickled value and its segments.
    Returned {
        /// The task.
        id: u64,
        /// Pickled value.
        payload: Vec<u8>,
        /// Segments holding its out-of-band buffers.
        fds: Vec<OwnedFd>,
    },
    /// The task raised: the pickled exception and its segments.
    Raised {
        /// The task.
        id: u64,
        /// Pickled exception.
        payload: Vec<u8>,
        /// Segments holding its out-of-band buffers.
        fds: Vec<OwnedFd>,
    },
    /// The worker running the task died.
    Crashed {
        /// The task.
        id: u64,
        /// The worker's pid.
        pid: u32,
        /// How it ended.
        exit: Exit,
        /// Whether the kernel's OOM killer killed a process of this cgroup meanwhile.
        oom: bool,
    },
    /// The task ran past its time limit; its worker was killed.
    TimedOut {
        /// The task.
        id: u64,
        /// The worker's pid.
        pid: u32,
        /// The limit.
        timeout: Duration,
    },
    /// The task's worker was stopped by `Supervisor::terminate`.
    Terminated {
        /// The task.
        id: u64,
        /// The worker's pid.
        pid: u32,
        /// How it ended.
        exit: Exit,
    },
    /// The task could not be handed to a worker: its shared-memory segment could not be made,
    /// or the channel to its worker failed (the worker was then killed and replaced).
    Failed {
        /// The task.
        id: u64,
        /// The operating system's error number, if there is one.
        errno: Option<i32>,
        /// What failed.
        reason: Arc<str>,
    },
    /// The pool cannot run tasks any more (workers fail to start, or the initializer failed).
    Broken {
        /// The task.
        id: u64,
        /// Why.
        reason: Arc<str>,
    },
    /// Shutdown finished: every worker has exited. The last event.
    Closed,
}

/// Why `submit` refused a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The pool is shut down.
    ShutDown,
    /// The pool is broken, for this reason.
    Broken(Arc<str>),
    /// The payload or descriptors do not fit a frame.
    Frame(FrameError),
}

/// What `cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The task had not been sent to a worker; it is dropped.
    Cancelled,
    /// The task is with a worker and `interrupt` was not asked: it goes on.
    Running,
    /// The task was with a worker: skipped if not started, else its worker was killed.
    Interrupted,
    /// No such task (already finished, or never submitted).
    Unknown,
}
