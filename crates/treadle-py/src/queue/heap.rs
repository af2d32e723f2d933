//! The binary heap behind `treadle.PriorityQueue`: heapq's algorithm, made transactional.
//!
//! Push and pop are `heapq.heappush` and `heapq.heappop` step for step (the same comparisons in the
//! same order, only `<`), so items that compare equal come out in the order `queue.PriorityQueue`
//! gives them. Unlike heapq, a comparison that raises leaves the heap exactly as it was: every
//! move is a swap, swaps are logged, and on an error they are undone (undoing needs no comparison,
//! so it cannot fail). The item a failed push was given is handed back.
//!
//! Comparisons run Python code, so the heap is never behind a core mutex while they run: the
//! caller owns the `Vec` outright (taken out of its cell under the queue's monitor lock).

use pyo3::prelude::*;

type Swaps = Vec<(usize, usize)>;

fn swap(heap: &mut [Py<PyAny>], swaps: &mut Swaps, a: usize, b: usize) {
    heap.swap(a, b);
    swaps.push((a, b));
}

fn undo(heap: &mut [Py<PyAny>], swaps: &Swaps) {
    for &(a, b) in swaps.iter().rev() {
        heap.swap(a, b);
    }
}

fn less(py: Python<'_>, a: &Py<PyAny>, b: &Py<PyAny>) -> PyResult<bool> {
    a.bind(py).lt(b.bind(py))
}

/// heapq's `_siftdown`: moves the item at `pos` up towards `start` while it is less than its parent.
fn sift_towards_root(
    py: Python<'_>,
    heap: &mut [Py<PyAny>],
    swaps: &mut Swaps,
    start: usize,
    mut pos: usize,
) -> PyResult<()> {
    while pos > start {
        let parent = (pos - 1) >> 1;
        if !less(py, &heap[pos], &heap[parent])? {
            break;
        }
        swap(heap, swaps, pos, parent);
        pos = parent;
    }
    Ok(())
}

/// heapq's `_siftup`: moves the smaller child up until a leaf, then sifts the item back up.
fn sift_to_leaf(
    py: Python<'_>,
    heap: &mut [Py<PyAny>],
    swaps: &mut Swaps,
    start: usize,
) -> PyResult<()> {
    let end = heap.len();
    let limit = end >> 1;
    let mut pos = start;
    while pos < limit {
        let mut child = 2 * pos + 1;
        if child + 1 < end && !less(py, &heap[child], &heap[child + 1])? {
            child += 1;
        }
        swap(heap, swaps, pos, child);
        pos = child;
    }
    sift_towards_root(py, heap, swaps, start, pos)
}

/// `heapq.heappush`; on a failed comparison the heap is unchanged and the item comes back.
pub(crate) fn push(
    py: Python<'_>,
    heap: &mut Vec<Py<PyAny>>,
    item: Py<PyAny>,
) -> Result<(), (PyErr, Py<PyAny>)> {
    heap.push(item);
    let mut swaps = Swaps::new();
    let last = heap.len() - 1;
    if let Err(error) = sift_towards_root(py, heap, &mut swaps, 0, last) {
        undo(heap, &swaps);
        let item = heap.pop().expect("the pushed item is still last");
        return Err((error, item));
    }
    Ok(())
}

/// `heapq.heappop`; `Ok(None)` when empty. On a failed comparison the heap is unchanged.
pub(crate) fn pop(py: Python<'_>, heap: &mut Vec<Py<PyAny>>) -> PyResult<Option<Py<PyAny>>> {
    let Some(last) = heap.len().checked_sub(1) else {
        return Ok(None);
    };
    heap.swap(0, last);
    let smallest = heap.pop().expect("the heap is not empty");
    if heap.is_empty() {
        return Ok(Some(smallest));
    }
    let mut swaps = Swaps::new();
    if let Err(error) = sift_to_leaf(py, heap, &mut swaps, 0) {
        undo(heap, &swaps);
        heap.push(smallest);
        let last = heap.len() - 1;
        heap.swap(0, last);
        return Err(error);
    }
    Ok(Some(smallest))
}
