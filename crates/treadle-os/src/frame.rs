//! The frames parent and worker exchange over their socket.
//!
//! A frame is a 16-byte little-endian header, then `len` payload bytes:
//!
//! ```text
//! len: u32 | kind: u8 | fds: u8 | reserved: u16 | task: u64
//! ```
//!
//! `fds` file descriptors travel with the frame as `SCM_RIGHTS` ancillary data, attached to the
//! `sendmsg` that carries its first byte, so they always arrive no later than the frame's header;
//! the receiver keeps them in a FIFO and hands each frame the next `fds` of them. A task's or an
//! answer's frame carries at most one: the shared-memory segment that holds all of its
//! out-of-band buffers (`segment.rs`). The Python side (`treadle/multiprocessing/wire.py`) reads
//! and writes the same layout with `struct.Struct("<IBBHQ")` ([`HEADER_FORMAT`]).

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 16;

/// The header's layout as Python's `struct` module spells it (`treadle/multiprocessing/wire.py`
/// uses it).
pub const HEADER_FORMAT: &str = "<IBBHQ";

/// Every frame kind by the name the Python side gives it: the one list both sides are checked
/// against (`_treadle._wire()`, `tests/test_wire.py`).
pub const KINDS: [(&str, u8); 9] = [
    ("INIT", to_worker::INIT),
    ("TASK", to_worker::TASK),
    ("CANCEL", to_worker::CANCEL),
    ("EXIT", to_worker::EXIT),
    ("READY", from_worker::READY),
    ("RETURNED", from_worker::RETURNED),
    ("RAISED", from_worker::RAISED),
    ("INIT_FAILED", from_worker::INIT_FAILED),
    ("SKIPPED", from_worker::SKIPPED),
];

/// Frame kinds from the parent to a worker.
pub mod to_worker {
    /// The pool's set-up: the parent's `sys.path`, the initializer and its arguments (pickled).
    pub const INIT: u8 = 1;
    /// A task: the pickled callable and arguments.
    pub const TASK: u8 = 2;
    /// Skip this already-sent task if it has not started.
    pub const CANCEL: u8 = 3;
    /// Finish the queued tasks, then exit.
    pub const EXIT: u8 = 4;
}

/// Frame kinds from a worker to the parent.
pub mod from_worker {
    /// The initializer ran; the worker takes tasks.
    pub const READY: u8 = 16;
    /// The task returned; the payload is the pickled value.
    pub const RETURNED: u8 = 17;
    /// The task raised; the payload is the pickled exception.
    pub const RAISED: u8 = 18;
    /// The initializer raised; the payload is the traceback as UTF-8 text.
    pub const INIT_FAILED: u8 = 19;
    /// A cancelled task was skipped without running.
    pub const SKIPPED: u8 = 20;
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload bytes after the header.
    pub len: u32,
    /// What the frame is (`to_worker::*` or `from_worker::*`).
    pub kind: u8,
    /// File descriptors that travel with the frame.
    pub fds: u8,
    /// The task the frame is about (0 when none).
    pub task: u64,
}

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.len.to_le_bytes());
        out[4] = self.kind;
        out[5] = self.fds;
        out[8..16].copy_from_slice(&self.task.to_le_bytes());
        out
    }

    /// Reads a header from the start of `bytes`, if there are enough of them.
    pub fn decode(bytes: &[u8]) -> Option<Header> {
        let head: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Header {
            len: u32::from_le_bytes([head[0], head[1], head[2], head[3]]),
            kind: head[4],
            fds: head[5],
            task: u64::from_le_bytes([
                head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15],
            ]),
        })
    }
}

/// A whole frame (header then payload) in one buffer, ready to send.
pub fn encode(kind: u8, task: u64, payload: &[u8], fds: usize) -> Result<Vec<u8>, FrameError> {
    let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge)?;
    let fds = u8::try_from(fds).map_err(|_| FrameError::TooManyFds)?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(
        &Header {
            len,
            kind,
            fds,
            task,
        }
        .encode(),
    );
    out.extend_from_slice(payload);
    Ok(out)
}

/// Why a frame cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The payload is 4 GiB or more (large buffers belong in shared memory).
    TooLarge,
    /// More than 255 file descriptors.
    TooManyFds,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameError::TooLarge => {
                "its pickle is 4 GiB or more (only buffers pickled out of band, such as numpy \
                 arrays, travel through shared memory)"
            }
            FrameError::TooManyFds => "it carries more than 255 file descriptors",
        })
    }
}

impl std::error::Error for FrameError {}
