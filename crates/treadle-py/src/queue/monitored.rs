//! `queue.Queue`'s own algorithms for `put` and `get`, run as a monitor over the storage steps:
//! the path of `PriorityQueue` and of subclasses that override a storage step.

use super::errors::{shut_down, Empty, Full};
use super::monitor::{Held, Monitor};
use super::py_queue::PyQueue;
use crate::runtime::timeout::Wait;
use pyo3::prelude::*;
use std::sync::atomic::Ordering;
use std::time::Instant;
use treadle_core::QueueWait;

impl PyQueue {
    // `queue.Queue`'s algorithms, run as a monitor.

    /// `queue.Queue.put` with the bound checked against `deadline`.
    pub(super) fn monitor_put(
        &self,
        monitor: &Monitor,
        slf: &Bound<'_, PyQueue>,
        item: Py<PyAny>,
        wait: PyResult<Wait>,
    ) -> PyResult<()> {
        let py = slf.py();
        let held = monitor.enter(py)?;
        if monitor.is_shut_down() {
            return Err(shut_down(py));
        }
        if self.bound() > 0 {
            match wait? {
                Wait::Never => {
                    if self.storage_is_full(slf)? {
                        return Err(Full::new_err(()));
                    }
                }
                Wait::Until(deadline) => {
                    while self.storage_is_full(slf)? {
                        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                            return Err(Full::new_err(()));
                        }
                        monitor.wait(
                            py,
                            slf.as_any(),
                            &held,
                            &monitor.not_full,
                            QueueWait::NotFull,
                            deadline,
                        )?;
                        if monitor.is_shut_down() {
                            return Err(shut_down(py));
                        }
                    }
                }
            }
        }
        self.storage_put(slf, item)?;
        monitor.unfinished_tasks.fetch_add(1, Ordering::AcqRel);
        monitor.not_empty.notify(1);
        Ok(())
    }

    /// `queue.Queue.get` with `deadline`.
    pub(super) fn monitor_get(
        &self,
        monitor: &Monitor,
        slf: &Bound<'_, PyQueue>,
        wait: PyResult<Wait>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let held = monitor.enter(py)?;
        self.monitor_get_held(monitor, slf, &held, wait)
    }

    pub(super) fn monitor_get_held(
        &self,
        monitor: &Monitor,
        slf: &Bound<'_, PyQueue>,
        held: &Held<'_>,
        wait: PyResult<Wait>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let shut_down_and_empty = |this: &PyQueue| -> PyResult<bool> {
            Ok(monitor.is_shut_down() && this.storage_len(slf)? == 0)
        };
        if shut_down_and_empty(self)? {
            return Err(shut_down(py));
        }
        match wait? {
            Wait::Never => {
                if self.storage_len(slf)? == 0 {
                    return Err(Empty::new_err(()));
                }
            }
            Wait::Until(deadline) => {
                while self.storage_len(slf)? == 0 {
                    if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                        return Err(Empty::new_err(()));
                    }
                    monitor.wait(
                        py,
                        slf.as_any(),
                        held,
                        &monitor.not_empty,
                        QueueWait::NotEmpty,
                        deadline,
                    )?;
                    if shut_down_and_empty(self)? {
                        return Err(shut_down(py));
                    }
                }
            }
        }
        let item = self.storage_get(slf)?;
        monitor.not_full.notify(1);
        Ok(item)
    }
}
