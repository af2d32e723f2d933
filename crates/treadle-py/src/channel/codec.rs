//! How an object travels as a record, and back.
//!
//! The common small messages skip pickle: an `int` that fits 64 bits, a `float`, a `str`, a
//! `bytes`, `None`, `True` and `False` (exactly those types, not subclasses) are records of
//! their own kinds. Everything else is pickled in Python by the hook `treadle.multiprocessing`
//! registers (`_set_channel_pickler`): `multiprocessing.reduction.ForkingPickler` with protocol
//! 5, whose large buffers come back separately and are written straight from the object's
//! memory into the record (one copy), and read back into one `bytearray` that the unpickled
//! objects share (one copy, writable, as a numpy array expects). A pickling error is the
//! hook's, which names the part that cannot be pickled.
//!
//! Nothing here runs while a ring's lock is held but [`Spot::fill`], which only copies bytes.

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};

/// Record kinds.
pub(crate) mod kind {
    /// A pickle, all in band.
    pub(crate) const PICKLE: u32 = 0;
    /// Bytes sent with `Connection.send_bytes`.
    pub(crate) const MESSAGE: u32 = 1;
    /// An `int` in 64 bits, little-endian.
    pub(crate) const INT: u32 = 2;
    /// A `str` in UTF-8.
    pub(crate) const STR: u32 = 3;
    /// A `bytes` object.
    pub(crate) const BYTES: u32 = 4;
    /// A `float`, little-endian.
    pub(crate) const FLOAT: u32 = 5;
    /// `None`.
    pub(crate) const NONE: u32 = 6;
    /// `True`.
    pub(crate) const TRUE: u32 = 7;
    /// `False`.
    pub(crate) const FALSE: u32 = 8;
    /// A pickle with out-of-band buffers: `count: u64, pickle length: u64, count lengths: u64`,
    /// then the pickle, then the buffers.
    pub(crate) const PICKLE_BUFFERS: u32 = 9;
}

/// `dumps(obj, label) -> (bytes, [memoryview, ...])`, set by `treadle.multiprocessing`.
static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `_set_channel_pickler(dumps)`: how channels pickle what has no record kind of its own;
/// `dumps(obj, label)` returns the pickle and its out-of-band buffers (contiguous memoryviews),
/// or raises an error that names the part of `obj` (called `label`) that cannot be pickled.
#[pyfunction]
pub(crate) fn _set_channel_pickler(py: Python<'_>, dumps: Py<PyAny>) -> PyResult<()> {
    DUMPS
        .set(py, dumps)
        .map_err(|_| PyRuntimeError::new_err("the channel pickler is already set"))
}

/// An object as a record: its kind and the parts of its payload, borrowed from the object (and
/// the buffers its pickle left out of band) where they can be.
pub(crate) struct Encoded<'py> {
    kind: u32,
    /// The payload of a number (or nothing).
    inline: [u8; 8],
    inline_len: usize,
    /// A `bytes` whose contents are the payload (or follow the header).
    body: Option<Bound<'py, PyAny>>,
    /// A `str` whose UTF-8 is the payload.
    text: Option<Bound<'py, PyString>>,
    /// The out-of-band header.
    header: Vec<u8>,
    /// Out-of-band buffers, each held (and its memory pinned) until the record is written.
    buffers: Vec<PyUntypedBuffer>,
}

impl<'py> Encoded<'py> {
    fn of_kind(kind: u32) -> Self {
        Encoded {
            kind,
            inline: [0; 8],
            inline_len: 0,
            body: None,
            text: None,
            header: Vec::new(),
            buffers: Vec::new(),
        }
    }

    fn inline(kind: u32, bytes: [u8; 8]) -> Self {
        let mut encoded = Self::of_kind(kind);
        encoded.inline = bytes;
        encoded.inline_len = 8;
        encoded
    }

    fn body(kind: u32, body: Bound<'py, PyAny>) -> Self {
        let mut encoded = Self::of_kind(kind);
        encoded.body = Some(body);
        encoded
    }

    /// The record's kind.
    pub(crate) fn kind(&self) -> u32 {
        self.kind
    }

    /// The payload's length.
    pub(crate) fn len(&self) -> usize {
        self.parts().as_slice().iter().map(|part| part.len()).sum()
    }

    /// The payload's parts, borrowed from what this holds.
    pub(crate) fn parts(&self) -> Parts<'_> {
        if let Some(text) = &self.text {
            // A str made UTF-8 (by `to_str`, when it was encoded) keeps it as long as it lives.
            return Parts::Two([text.to_str().map(str::as_bytes).unwrap_or_default(), &[]]);
        }
        let body: &[u8] = match &self.body {
            // SAFETY: `body` is an exact `bytes` (checked where it was set), immutable while
            // this holds a reference to it.
            Some(body) => unsafe { body.cast_unchecked::<PyBytes>() }.as_bytes(),
            None => &[],
        };
        if self.buffers.is_empty() {
            return Parts::Two([&self.inline[..self.inline_len], body]);
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 + self.buffers.len());
        parts.push(&self.header);
        parts.push(body);
        for buffer in &self.buffers {
            // SAFETY: the buffer is C-contiguous (checked when it was taken) and its exporter
            // keeps the memory in place while the view is held, which `self` does.
            parts.push(unsafe {
                std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), buffer.len_bytes())
            });
        }
        Parts::Many(parts)
    }
}

/// A record's payload in parts: two (the common case, without allocating) or more.
pub(crate) enum Parts<'a> {
    Two([&'a [u8]; 2]),
    Many(Vec<&'a [u8]>),
}

impl<'a> Parts<'a> {
    /// The parts as a slice.
    pub(crate) fn as_slice(&self) -> &[&'a [u8]] {
        match self {
            Parts::Two(parts) => parts,
            Parts::Many(parts) => parts,
        }
    }
}

/// Encodes `obj`; `label` names it in a pickling error (`"the item"`).
pub(crate) fn encode<'py>(obj: &Bound<'py, PyAny>, label: &str) -> PyResult<Encoded<'py>> {
    if obj.is_none() {
        return Ok(Encoded::of_kind(kind::NONE));
    }
    if let Ok(flag) = obj.cast_exact::<PyBool>() {
        return Ok(Encoded::of_kind(if flag.is_true() {
            kind::TRUE
        } else {
            kind::FALSE
        }));
    }
    if obj.is_exact_instance_of::<PyInt>() {
        if let Ok(value) = obj.extract::<i64>() {
            return Ok(Encoded::inline(kind::INT, value.to_le_bytes()));
        }
    } else if let Ok(value) = obj.cast_exact::<PyFloat>() {
        return Ok(Encoded::inline(kind::FLOAT, value.value().to_le_bytes()));
    } else if let Ok(text) = obj.cast_exact::<PyString>() {
        // A str with lone surrogates has no UTF-8: it is pickled.
        if text.to_str().is_ok() {
            let mut encoded = Encoded::of_kind(kind::STR);
            encoded.text = Some(text.clone());
            return Ok(encoded);
        }
    } else if obj.is_exact_instance_of::<PyBytes>() {
        return Ok(Encoded::body(kind::BYTES, obj.clone()));
    }
    pickled(obj, label)
}

/// Encodes a bytes-like object as a `send_bytes` message (its buffer, not a copy).
pub(crate) fn message<'py>(data: &Bound<'py, PyAny>) -> PyResult<Encoded<'py>> {
    if data.is_exact_instance_of::<PyBytes>() {
        return Ok(Encoded::body(kind::MESSAGE, data.clone()));
    }
    // A message's payload is the buffer alone: no out-of-band header, no body.
    let mut encoded = Encoded::of_kind(kind::MESSAGE);
    encoded.buffers.push(contiguous(data)?);
    Ok(encoded)
}

fn contiguous(data: &Bound<'_, PyAny>) -> PyResult<PyUntypedBuffer> {
    let buffer = PyUntypedBuffer::get(data)?;
    if !buffer.is_c_contiguous() {
        return Err(pyo3::exceptions::PyBufferError::new_err(
            "memoryview: underlying buffer is not C-contiguous",
        ));
    }
    Ok(buffer)
}

fn pickled<'py>(obj: &Bound<'py, PyAny>, label: &str) -> PyResult<Encoded<'py>> {
    let py = obj.py();
    let dumps = DUMPS.get(py).ok_or_else(|| {
        PyRuntimeError::new_err("treadle.multiprocessing is not imported: no channel pickler")
    })?;
    let result = dumps.bind(py).call1((obj, label))?;
    let result = result.cast_into::<PyTuple>()?;
    let data = result.get_item(0)?;
    if !data.is_exact_instance_of::<PyBytes>() {
        return Err(PyRuntimeError::new_err(
            "the channel pickler returned no bytes",
        ));
    }
    let buffers = result.get_item(1)?;
    let buffers = buffers.cast::<PyList>()?;
    if buffers.is_empty() {
        return Ok(Encoded::body(kind::PICKLE, data));
    }
    let mut encoded = Encoded::body(kind::PICKLE_BUFFERS, data);
    let pickle_len = encoded
        .body
        .as_ref()
        .map_or(0, |body| body.len().unwrap_or(0));
    encoded
        .header
        .extend_from_slice(&(buffers.len() as u64).to_le_bytes());
    encoded
        .header
        .extend_from_slice(&(pickle_len as u64).to_le_bytes());
    for buffer in buffers.iter() {
        let buffer = contiguous(&buffer)?;
        encoded
            .header
            .extend_from_slice(&(buffer.len_bytes() as u64).to_le_bytes());
        encoded.buffers.push(buffer);
    }
    Ok(encoded)
}

// -- reading --------------------------------------------------------------------------------

/// Records at least this long are copied straight into the object they become.
const DIRECT: usize = 256;

/// Where a record may be copied, allocated (attached) before the read lock is taken: the
/// Python object a large record of a known kind becomes. The record taken may turn out to be
/// another one (another reader was quicker): then it is copied into a `Vec` instead.
pub(crate) struct Target<'py> {
    object: Option<Bound<'py, PyAny>>,
    spot: Spot,
}

/// The raw part of a [`Target`], which the read (under the ring's lock, maybe detached) writes.
#[derive(Clone, Copy)]
pub(crate) struct Spot {
    ptr: *mut u8,
    len: usize,
    kind: u32,
}

// SAFETY: a `Spot` points into a Python object its `Target` holds a reference to until the
// read that fills it is over; filling writes plain bytes, which needs no interpreter.
unsafe impl Send for Spot {}

/// A record copied out of a ring, not yet an object.
pub(crate) enum Raw {
    /// Copied into the target.
    Filled(u32),
    /// A record of up to 8 bytes.
    Small(u32, [u8; 8], usize),
    /// Any other record.
    Heap(u32, Vec<u8>),
}

impl<'py> Target<'py> {
    /// A target for the record `peek` showed (`len` bytes of `kind`), if it is worth one.
    pub(crate) fn prepare(py: Python<'py>, peeked: Option<(usize, u32)>) -> PyResult<Self> {
        let none = Spot {
            ptr: std::ptr::null_mut(),
            len: usize::MAX,
            kind: u32::MAX,
        };
        let Some((len, kind)) = peeked.filter(|(len, _)| *len >= DIRECT) else {
            return Ok(Target {
                object: None,
                spot: none,
            });
        };
        let (object, ptr) = match kind {
            kind::BYTES | kind::MESSAGE | kind::PICKLE | kind::STR => {
                // SAFETY: a new, uninitialized bytes object of `len` bytes, filled before
                // anyone else sees it (or dropped unfilled).
                let object = unsafe {
                    Bound::from_owned_ptr_or_err(
                        py,
                        ffi::PyBytes_FromStringAndSize(std::ptr::null(), len as ffi::Py_ssize_t),
                    )?
                };
                // SAFETY: `object` is a bytes object.
                let ptr = unsafe { ffi::PyBytes_AsString(object.as_ptr()) }.cast::<u8>();
                (object, ptr)
            }
            kind::PICKLE_BUFFERS => {
                // SAFETY: as above, for a bytearray.
                let object = unsafe {
                    Bound::from_owned_ptr_or_err(
                        py,
                        ffi::PyByteArray_FromStringAndSize(
                            std::ptr::null(),
                            len as ffi::Py_ssize_t,
                        ),
                    )?
                };
                // SAFETY: `object` is a bytearray.
                let ptr = unsafe { ffi::PyByteArray_AsString(object.as_ptr()) }.cast::<u8>();
                (object, ptr)
            }
            _ => {
                return Ok(Target {
                    object: None,
                    spot: none,
                })
            }
        };
        Ok(Target {
            object: Some(object),
            spot: Spot { ptr, len, kind },
        })
    }

    /// The part a read fills.
    pub(crate) fn spot(&self) -> Spot {
        self.spot
    }
}

impl Spot {
    /// Copies a record's `pieces` out: into the target if it is the record the target was made
    /// for, else into memory of its own. Only copies bytes (runs under a ring's lock).
    pub(crate) fn fill(self, kind: u32, pieces: &[&[u8]]) -> Raw {
        let len: usize = pieces.iter().map(|piece| piece.len()).sum();
        if kind == self.kind && len == self.len {
            let mut at = 0;
            for piece in pieces {
                // SAFETY: the target holds `self.len` bytes, and the pieces add up to that.
                unsafe {
                    std::ptr::copy_nonoverlapping(piece.as_ptr(), self.ptr.add(at), piece.len())
                };
                at += piece.len();
            }
            return Raw::Filled(kind);
        }
        if len <= 8 {
            let mut small = [0u8; 8];
            let mut at = 0;
            for piece in pieces {
                small[at..at + piece.len()].copy_from_slice(piece);
                at += piece.len();
            }
            return Raw::Small(kind, small, len);
        }
        Raw::Heap(kind, pieces.concat())
    }
}

fn loads<'py>(py: Python<'py>) -> PyResult<&'py Bound<'py, PyAny>> {
    LOADS.import(py, "pickle", "loads")
}

/// What a decoded record asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// The object (`get`, `recv`).
    Object,
    /// The message's bytes (`recv_bytes`).
    Bytes,
}

/// Makes the object a record stands for (or, with `Want::Bytes`, its bytes: a message's own,
/// or the pickle of any other record's object, as a pipe carries it).
pub(crate) fn decode<'py>(
    py: Python<'py>,
    raw: Raw,
    target: Target<'py>,
    want: Want,
) -> PyResult<Bound<'py, PyAny>> {
    let (kind, bytes): (u32, Option<Bound<'py, PyAny>>) = match raw {
        Raw::Filled(kind) => (kind, target.object),
        Raw::Small(kind, data, len) => {
            let value = small(py, kind, data, len)?;
            return match (value, want) {
                (Some(value), Want::Object) => Ok(value),
                (Some(value), Want::Bytes) => to_bytes(&value),
                (None, _) => {
                    decode_bytes(py, kind, PyBytes::new(py, &data[..len]).into_any(), want)
                }
            };
        }
        Raw::Heap(kind, data) => {
            let object = if kind == kind::PICKLE_BUFFERS {
                PyByteArray::new(py, &data).into_any()
            } else {
                PyBytes::new(py, &data).into_any()
            };
            (kind, Some(object))
        }
    };
    let bytes = bytes.ok_or_else(|| PyRuntimeError::new_err("a channel record was lost"))?;
    decode_bytes(py, kind, bytes, want)
}

fn small<'py>(
    py: Python<'py>,
    kind: u32,
    data: [u8; 8],
    len: usize,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(Some(match (kind, len) {
        (kind::INT, 8) => i64::from_le_bytes(data).into_pyobject(py)?.into_any(),
        (kind::FLOAT, 8) => f64::from_le_bytes(data).into_pyobject(py)?.into_any(),
        (kind::NONE, _) => py.None().into_bound(py),
        (kind::TRUE, _) => PyBool::new(py, true).to_owned().into_any(),
        (kind::FALSE, _) => PyBool::new(py, false).to_owned().into_any(),
        _ => return Ok(None),
    }))
}

fn decode_bytes<'py>(
    py: Python<'py>,
    kind: u32,
    bytes: Bound<'py, PyAny>,
    want: Want,
) -> PyResult<Bound<'py, PyAny>> {
    if want == Want::Bytes && kind == kind::MESSAGE {
        return Ok(bytes);
    }
    let value = match kind {
        kind::BYTES => bytes,
        kind::STR => {
            let data = bytes.cast::<PyBytes>()?.as_bytes();
            PyString::from_bytes(py, data)?.into_any()
        }
        kind::PICKLE | kind::MESSAGE => loads(py)?.call1((bytes,))?,
        kind::PICKLE_BUFFERS => unpickle_with_buffers(py, &bytes)?,
        _ => {
            return Err(PyRuntimeError::new_err(format!(
                "a channel record of unknown kind {kind}"
            )))
        }
    };
    match want {
        Want::Object => Ok(value),
        Want::Bytes => to_bytes(&value),
    }
}

/// A record of `PICKLE_BUFFERS` in a bytearray: unpickled with its buffers as views of the
/// bytearray (no copy: the objects share its memory, writable).
fn unpickle_with_buffers<'py>(
    py: Python<'py>,
    record: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let bad = || PyRuntimeError::new_err("a damaged channel record");
    let array = record.cast::<PyByteArray>()?;
    // SAFETY: read while attached, and nothing runs between this read and its copies below.
    let data = unsafe { array.as_bytes() };
    let word = |at: usize| -> PyResult<usize> {
        let bytes: [u8; 8] = data
            .get(at..at + 8)
            .and_then(|slice| slice.try_into().ok())
            .ok_or_else(bad)?;
        usize::try_from(u64::from_le_bytes(bytes)).map_err(|_| bad())
    };
    let count = word(0)?;
    let pickle_len = word(8)?;
    if count > data.len() / 8 {
        return Err(bad());
    }
    let mut lengths = Vec::with_capacity(count);
    for i in 0..count {
        lengths.push(word(16 + 8 * i)?);
    }
    let mut at = 16 + 8 * count;
    let view = py
        .import("builtins")?
        .getattr("memoryview")?
        .call1((record,))?;
    let slice = |start: usize, len: usize| -> PyResult<Bound<'py, PyAny>> {
        if start.checked_add(len).map_or(true, |end| end > data.len()) {
            return Err(bad());
        }
        view.get_item(pyo3::types::PySlice::new(
            py,
            start as isize,
            (start + len) as isize,
            1,
        ))
    };
    let pickle = slice(at, pickle_len)?;
    at += pickle_len;
    let buffers = PyList::empty(py);
    for len in lengths {
        buffers.append(slice(at, len)?)?;
        at += len;
    }
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("buffers", buffers)?;
    loads(py)?.call((pickle,), Some(&kwargs))
}

/// An object's pickle, for `recv_bytes` of a record that was not a message.
fn to_bytes<'py>(value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = value.py();
    let dumps = DUMPS.get(py).ok_or_else(|| {
        PyRuntimeError::new_err("treadle.multiprocessing is not imported: no channel pickler")
    })?;
    let pickled = dumps.bind(py).call1((value, "the object"))?;
    let pickled = pickled.cast::<PyTuple>()?;
    let buffers = pickled.get_item(1)?;
    if buffers.len()? == 0 {
        return pickled.get_item(0);
    }
    // Out-of-band buffers belong in band in a message that carries the pickle alone.
    let pickle = py.import("pickle")?;
    pickle.call_method1("dumps", (value, 5))
}
