//! treadle's Linux layer: everything that talks to the kernel about processes, on `rustix`.
//!
//! - [`supervisor`]: the process pool's supervisor, split into its state machine (no I/O,
//!   testable without processes) and its poller (`ppoll` over sockets, pidfds and an eventfd).
//! - [`fork_server`]: the client of the fork server workers are forked from.
//! - [`process`]: starting a worker (fork-and-exec, or by the fork server) and learning how it
//!   ended; `PR_SET_PDEATHSIG` so that workers die with their parent.
//! - [`channel`]: a worker's socket pair, `SCM_RIGHTS` descriptor passing, the poller's eventfd.
//! - [`frame`]: the wire format parent and worker speak, defined once (the Python worker is
//!   checked against it); [`segment`]: how a frame's large buffers lie in its one shared-memory
//!   segment.
//! - [`os_threads`] and [`oom`]: the `/proc` and cgroup readers (the process's threads for stall
//!   verdicts, the OOM-kill counter for crash reports).
//! - [`ring`]: the channel of `treadle.multiprocessing`'s queues and pipes, a multi-producer
//!   multi-consumer record ring in shared memory ([`shm`]) that a writer killed mid-record
//!   cannot tear ([`robust`]: glibc's robust mutexes), with the table of the processes that hold
//!   it ([`holders`]), so that a reader learns when nobody is left to write.
//!
//! Nothing here knows about Python, and `treadle-core` (portable, model-checked with loom) knows
//! nothing of this crate; the bindings use both. `unsafe` appears only where rustix has no safe
//! call (`pre_exec`, mapping shared memory, the robust mutexes through `libc`) and where the ring
//! reads and writes its shared memory, each block with its `// SAFETY:` argument.

pub mod channel;
pub mod fork_server;
pub mod frame;
pub mod futex_word;
pub mod holders;
pub mod oom;
pub mod os_threads;
pub mod process;
pub mod ring;
pub mod robust;
pub mod segment;
pub mod shared_lock;
pub mod shm;
pub mod supervisor;

pub use fork_server::{ForkServer, ParentState};
pub use process::{die_with_parent, Exit, CHANNEL_FD};
pub use supervisor::{
    Buffers, CancelOutcome, CaptureState, Config, Event, ForkCaller, Origin, OutOfBand,
    SubmitError, Supervisor, Task,
};
