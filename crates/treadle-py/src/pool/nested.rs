//! A worker that waits on futures of its own pool: the pool as the futures' `Executor`.
//!
//! The worker tells the pool it blocks (`Executor::worker_blocks`): the futures go first in the
//! queue, and a spare thread is started if no idle worker will take them, so that they run on a
//! thread of their own, with their own thread-local state, and the worker waits for them in the
//! wait graph like any other thread (see `treadle_core::pool::Blocking`). Only when no thread
//! can be added does the waiting worker run one itself (`Executor::run`).

use super::job::run_job_counted;
use super::shared::{current_worker_pool, is_worker_of, PoolShared};
use super::worker::start_worker;
use crate::future::{Cell, Executor, Job};
use pyo3::prelude::*;
use std::sync::Arc;
use treadle_core::pool::Blocking;

impl Executor for PoolShared {
    fn is_current_worker(&self) -> bool {
        is_worker_of(self)
    }

    fn worker_blocks(&self, py: Python<'_>, waited: &[Arc<Cell>]) -> bool {
        match self.core.worker_blocks(waited) {
            Blocking::Wait => true,
            Blocking::Help => false,
            // A thread that cannot be started (the interpreter is exiting, or out of threads):
            // the worker runs the future itself rather than wait for nobody.
            Blocking::StartThread => match current_worker_pool() {
                Some(pool) if std::ptr::eq(Arc::as_ptr(&pool), self) => {
                    start_worker(py, &pool).is_ok()
                }
                _ => {
                    self.core.worker_exited();
                    false
                }
            },
        }
    }

    fn worker_unblocks(&self) {
        self.core.worker_unblocks();
    }

    fn run(&self, py: Python<'_>, cell: &Arc<Cell>, job: Job) {
        run_job_counted(py, self, cell, job);
    }
}
