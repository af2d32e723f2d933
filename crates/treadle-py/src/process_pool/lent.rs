//! Python buffers lent to the supervisor: a task's out-of-band buffers (pickle protocol 5's
//! `PickleBuffer.raw()` memoryviews) stay the caller's memory until the task goes to a worker,
//! when the poller copies them into the task's shared-memory segment.
//!
//! The memoryview is kept as the owner of the memory: while it lives, its buffer export keeps the
//! bytes where they are (a `bytearray` cannot be resized, a numpy array cannot be freed). The
//! poller reads them without the interpreter. Dropping the memoryview releases the export, which
//! needs the interpreter and may run Python code (the last reference to an array); a lent buffer
//! can be dropped anywhere, the supervisor's state mutex held, so its owner is put aside instead
//! and released by [`release`], which the binding calls, attached and with no lock held, after
//! every call into the supervisor.

use parking_lot::Mutex;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use treadle_os::OutOfBand;

/// Owners whose lent buffers were dropped, waiting to be released with the interpreter.
static RELEASED: Mutex<Vec<Py<PyAny>>> = Mutex::new(Vec::new());

/// The bytes of a C-contiguous Python buffer, and the object that owns them.
pub(crate) struct LentBuffer {
    owner: Option<Py<PyAny>>,
    start: *const u8,
    len: usize,
}

// SAFETY: `start` points into memory that `owner`'s buffer export keeps in place for as long as
// the `LentBuffer` lives (the owner is dropped, hence released, only after it); the memory is
// plain bytes, which any thread may read. A Python thread that writes them while the poller copies
// them makes the copy torn, as the standard library's pickling in its feeder thread would; the
// bytes are only handed to the kernel (`pwrite`), never read by Rust code.
unsafe impl Send for LentBuffer {}
// SAFETY: as for `Send`: sharing gives nothing but reads of those bytes.
unsafe impl Sync for LentBuffer {}

impl LentBuffer {
    /// Lends `object`'s bytes (a C-contiguous buffer of bytes, such as `PickleBuffer.raw()`).
    pub(crate) fn new(object: &Bound<'_, PyAny>) -> PyResult<LentBuffer> {
        let buffer = PyBuffer::<u8>::get(object)?;
        if !buffer.is_c_contiguous() {
            return Err(PyValueError::new_err(
                "an out-of-band buffer must be C-contiguous",
            ));
        }
        let (start, len) = (buffer.buf_ptr() as *const u8, buffer.len_bytes());
        // This export is released now; `object`'s own keeps the memory in place.
        drop(buffer);
        Ok(LentBuffer {
            owner: Some(object.clone().unbind()),
            start,
            len,
        })
    }
}

impl OutOfBand for LentBuffer {
    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `start` and `len` describe the owner's memory, kept in place while `self` lives
        // (see the `Send` impl); `len` is non-zero, so `start` is not null.
        unsafe { std::slice::from_raw_parts(self.start, self.len) }
    }
}

impl Drop for LentBuffer {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take() {
            RELEASED.lock().push(owner);
        }
    }
}

/// Releases the owners of the lent buffers dropped since the last call.
pub(crate) fn release(_py: Python<'_>) {
    let owners = {
        let mut released = RELEASED.lock();
        if released.is_empty() {
            return;
        }
        std::mem::take(&mut *released)
    };
    drop(owners);
}
