//! Who holds a shared object: a table in shared memory of the processes that have it open, each
//! with how many handles it holds for reading and for writing, and a count of handles on their
//! way to a process that has not opened them yet.
//!
//! It answers one question for a waiting reader: *can anyone else still write?* A process that
//! died (killed, or exited without closing) is still listed, so an entry counts only while its
//! process is alive: `kill(pid, 0)` says the pid exists, and `/proc/<pid>/stat` that it is not a
//! zombie (a killed child stays one until its parent reaps it) and that it started when the
//! holder did, so that a reused pid is not taken for the holder.
//!
//! A handle sent to another process (pickled into a child's start-up data, or into a message) is
//! counted *in transit* until that process opens it, unless its sender could attach it for the
//! receiver at once (a child whose pid it knows): in between, nobody may conclude that no writer
//! is left. When the table is full, later holders are not listed and the table says it cannot
//! judge (`None`), as it does while a handle is in transit.
//!
//! Processes never contend for a slot (each claims its own by pid with a compare-and-swap), but
//! two threads of one process would (both could claim a slot for the same pid, or one free the
//! slot the other is counting in), so a process changes the table under a process-local lock.
//! The lock is taken around `fork()` (`pthread_atfork`), so that no child starts with it held by
//! a thread it does not have.

use parking_lot::lock_api::RawMutex as _;
use parking_lot::RawMutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Once;

/// Entries in the table.
pub const SLOTS: usize = 128;

/// What a handle does with the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It takes messages.
    Read,
    /// It puts messages.
    Write,
}

#[repr(C)]
#[derive(Debug)]
struct Slot {
    /// The holder's pid, 0 for a free slot.
    pid: AtomicU32,
    readers: AtomicU32,
    writers: AtomicU32,
    /// Handles this process let go of before its parent counted them for it (an adopted
    /// handle): read debts in the low half, write debts in the high half; the parent's count
    /// pays them off instead of counting.
    debts: AtomicU32,
    /// The holder's start time (clock ticks since boot), 0 if unknown.
    start: AtomicU64,
}

/// The table, placed in shared memory (all zero is an empty table).
#[repr(C)]
#[derive(Debug)]
pub struct Holders {
    /// Set for good once a holder found no free slot.
    overflowed: AtomicU32,
    /// Handles sent and not yet opened by their receiver.
    in_transit: AtomicU32,
    /// Handles of each role listed, the dead's included until a sweep: [readers, writers].
    listed: [AtomicU32; 2],
    _pad: u32,
    slots: [Slot; SLOTS],
}

/// Serializes this process's changes to every table.
static CHANGING: RawMutex = RawMutex::INIT;

/// Holds [`CHANGING`] while it lives.
struct Changing;

impl Changing {
    fn begin() -> Changing {
        static AT_FORK: Once = Once::new();
        AT_FORK.call_once(|| {
            // SAFETY: the handlers are plain functions that only lock and unlock CHANGING, which
            // is what pthread_atfork expects of them (no allocation, no other lock).
            unsafe {
                libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork));
            }
        });
        CHANGING.lock();
        Changing
    }
}

impl Drop for Changing {
    fn drop(&mut self) {
        // SAFETY: `begin` locked it for this guard.
        unsafe { CHANGING.unlock() };
    }
}

extern "C" fn before_fork() {
    CHANGING.lock();
}

extern "C" fn after_fork() {
    // SAFETY: `before_fork` locked it in this thread (the child's one thread is the forking
    // thread), and the raw mutex has no owner to check.
    unsafe { CHANGING.unlock() };
}

/// The pid of this process (as the kernel numbers it).
pub fn this_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// A process's state letter and start time (clock ticks since boot), from `/proc/<pid>/stat`.
fn status(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces and parentheses: count fields after
    // its end. Field 3 is the state, field 22 the start time.
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split(' ');
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// A process's start time in clock ticks since boot.
pub fn start_time(pid: u32) -> Option<u64> {
    status(pid).map(|(_, start)| start)
}

/// Whether `pid` is alive (not a zombie) and is the process that started at `start` (0: do not
/// check).
pub fn alive(pid: u32, start: u64) -> bool {
    let Some(process) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    match rustix::process::test_kill_process(process) {
        Ok(()) | Err(rustix::io::Errno::PERM) => {}
        Err(_) => return false,
    }
    match status(pid) {
        Some(('Z' | 'X' | 'x', _)) => false,
        Some((_, now)) => start == 0 || now == start,
        // An unreadable /proc: believe kill().
        None => true,
    }
}

impl Holders {
    fn counter(slot: &Slot, role: Role) -> &AtomicU32 {
        match role {
            Role::Read => &slot.readers,
            Role::Write => &slot.writers,
        }
    }

    fn listed(&self, role: Role) -> &AtomicU32 {
        match role {
            Role::Read => &self.listed[0],
            Role::Write => &self.listed[1],
        }
    }

    /// Empties a slot's counts (its process is gone), taking them off the listed totals.
    fn clear(&self, slot: &Slot) {
        slot.debts.store(0, Ordering::Release);
        for role in [Role::Read, Role::Write] {
            let gone = Self::counter(slot, role).swap(0, Ordering::AcqRel);
            let _ = self
                .listed(role)
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    Some(n.saturating_sub(gone))
                });
        }
    }

    fn count(&self, slot: &Slot, role: Role) {
        let unit = Self::debt_unit(role);
        let paid = slot
            .debts
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |debts| {
                (Self::debt(debts, role) > 0).then(|| debts - unit)
            })
            .is_ok();
        if !paid {
            Self::counter(slot, role).fetch_add(1, Ordering::AcqRel);
            self.listed(role).fetch_add(1, Ordering::AcqRel);
        }
    }

    fn debt_unit(role: Role) -> u32 {
        match role {
            Role::Read => 1,
            Role::Write => 1 << 16,
        }
    }

    fn debt(debts: u32, role: Role) -> u32 {
        match role {
            Role::Read => debts & 0xffff,
            Role::Write => debts >> 16,
        }
    }

    /// Counts one more handle of `role` in process `pid` (started at `start`).
    pub fn attach(&self, pid: u32, start: u64, role: Role) {
        let _changing = Changing::begin();
        self.attach_locked(pid, start, role);
    }

    fn attach_locked(&self, pid: u32, start: u64, role: Role) {
        for slot in &self.slots {
            if slot.pid.load(Ordering::Acquire) == pid {
                if start != 0 && slot.start.load(Ordering::Acquire) != start {
                    // A process that died without detaching had this pid: its counts go.
                    self.clear(slot);
                    slot.start.store(start, Ordering::Release);
                }
                self.count(slot, role);
                return;
            }
        }
        for slot in &self.slots {
            if slot
                .pid
                .compare_exchange(0, pid, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.start.store(start, Ordering::Release);
                self.count(slot, role);
                return;
            }
        }
        // Free the slots of the dead and try once more before giving up on judging.
        if self.sweep() {
            return self.attach_locked(pid, start, role);
        }
        self.overflowed.store(1, Ordering::Release);
    }

    /// Counts one handle of `role` fewer in process `pid` (nothing if it holds none).
    pub fn detach(&self, pid: u32, role: Role) {
        let _changing = Changing::begin();
        self.detach_locked(pid, role);
    }

    /// Counts one handle of `role` fewer in process `pid`, a handle its parent counts for it
    /// (adopted): if the parent has not counted it yet, the process owes it, and the parent's
    /// count pays the debt off instead of counting.
    pub fn detach_adopted(&self, pid: u32, start: u64, role: Role) {
        let _changing = Changing::begin();
        let counted = self.slots.iter().any(|slot| {
            slot.pid.load(Ordering::Acquire) == pid
                && Self::counter(slot, role).load(Ordering::Acquire) > 0
        });
        if counted {
            self.detach_locked(pid, role);
            return;
        }
        // A slot to hold the debt (attach's search and claim, with nothing counted).
        self.attach_locked(pid, start, role);
        for slot in &self.slots {
            if slot.pid.load(Ordering::Acquire) == pid {
                // Undo the count attach made, and owe it instead.
                if self.uncount(slot, role) {
                    slot.debts
                        .fetch_add(Self::debt_unit(role), Ordering::AcqRel);
                }
                return;
            }
        }
    }

    /// Counts one handle of `role` fewer in `slot` and in the listed total; false if it
    /// counted none.
    fn uncount(&self, slot: &Slot, role: Role) -> bool {
        let counted = Self::counter(slot, role)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if counted {
            let _ = self
                .listed(role)
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
        counted
    }

    fn detach_locked(&self, pid: u32, role: Role) {
        for slot in &self.slots {
            if slot.pid.load(Ordering::Acquire) == pid {
                self.uncount(slot, role);
                if slot.readers.load(Ordering::Acquire) == 0
                    && slot.writers.load(Ordering::Acquire) == 0
                    && slot.debts.load(Ordering::Acquire) == 0
                {
                    slot.start.store(0, Ordering::Release);
                    let _ = slot
                        .pid
                        .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Acquire);
                }
                return;
            }
        }
    }

    /// Counts a handle sent towards a process that has not opened it yet.
    pub fn send(&self) {
        self.in_transit.fetch_add(1, Ordering::AcqRel);
    }

    /// A handle counted by [`Holders::send`] arrived (or will never arrive).
    pub fn arrived(&self) {
        let _ = self
            .in_transit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Frees the slots of processes that died; whether any was freed.
    fn sweep(&self) -> bool {
        let mut freed = false;
        for slot in &self.slots {
            let pid = slot.pid.load(Ordering::Acquire);
            if pid != 0 && !alive(pid, slot.start.load(Ordering::Acquire)) {
                self.clear(slot);
                slot.start.store(0, Ordering::Release);
                freed |= slot
                    .pid
                    .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
            }
        }
        freed
    }

    /// Whether the table lists every holder: none overflowed it, and no handle is in transit.
    fn can_judge(&self) -> bool {
        self.overflowed.load(Ordering::Acquire) == 0 && self.in_transit.load(Ordering::Acquire) == 0
    }

    /// Handles of `role` that live processes other than `pid` hold: `Some(0)` means none,
    /// `None` that the table cannot tell (it overflowed, or a handle is in transit).
    pub fn elsewhere(&self, pid: u32, role: Role) -> Option<u32> {
        if !self.can_judge() {
            return None;
        }
        let mut count = 0;
        for slot in &self.slots {
            let holder = slot.pid.load(Ordering::Acquire);
            if holder == 0 || holder == pid {
                continue;
            }
            let n = Self::counter(slot, role).load(Ordering::Acquire);
            if n != 0 && alive(holder, slot.start.load(Ordering::Acquire)) {
                count += n;
            }
        }
        Some(count)
    }

    /// Handles of `role` that process `pid` holds.
    pub fn here(&self, pid: u32, role: Role) -> u32 {
        self.slots
            .iter()
            .find(|slot| slot.pid.load(Ordering::Acquire) == pid)
            .map_or(0, |slot| Self::counter(slot, role).load(Ordering::Acquire))
    }

    /// Handles of `role` listed, in any process, the dead's included (a cheap look: one load):
    /// 0 once every holder let go of its handles, or `None` if the table cannot tell.
    pub fn listed_anywhere(&self, role: Role) -> Option<u32> {
        if !self.can_judge() {
            return None;
        }
        Some(self.listed(role).load(Ordering::Acquire))
    }
}
