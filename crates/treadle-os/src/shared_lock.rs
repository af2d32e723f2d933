//! `treadle.multiprocessing`'s locks and semaphores: a futex word in a slot of shared memory
//! that every process holding the slot's arena maps.
//!
//! **Arenas.** A process carves its locks out of arenas of [`ARENA_SLOTS`] slots ([`Region`]: a
//! memfd, mode 0600, never named in `/dev/shm`), one after the other, and never hands a slot out
//! twice. A lock passes to another process as its arena's descriptor and its slot; a process maps
//! each arena once, however many of its locks it receives. So a process holds one descriptor per
//! arena, not per lock (a program may make thousands of locks, as it may of the standard
//! library's named semaphores, which hold none), and an arena's memory goes back to the system
//! when the last process that maps it lets go, killed or not. A forked child carves its own
//! arenas: the slots left in its parent's are the parent's to hand out.
//!
//! Three kinds, as `multiprocessing.synchronize`'s `SemLock` has them:
//!
//! - [`Kind::Semaphore`]: the word is the count (Drepper's semaphore: take by compare-and-swap,
//!   sleepers counted so that a release wakes one only when one sleeps), with an optional bound.
//! - [`Kind::Lock`]: the word is 0 when free, else the holder's pid, with a bit
//!   ([`CONTENDED`]) that a waiter sets before it sleeps: Drepper's three-state mutex ("Futexes
//!   are tricky", mutex 2), the pid standing for "locked". A release swaps the word for 0 and
//!   calls the kernel only if the bit was set; a waiter woken takes the lock with the bit set
//!   (others may sleep still), or sets it again before it sleeps again, so a sleeper is never
//!   forgotten. Any thread of any process may release it, as a `multiprocessing.Lock` (a
//!   semaphore of one) allows; this is why glibc's robust mutexes, which only their owner may
//!   unlock, and the kernel's robust futex lists, which glibc owns per thread, do not serve.
//! - [`Kind::RLock`]: the same word, plus the holder's thread and depth; only the owner releases.
//!
//! **A dead owner is not a hang.** The pid in the word is the owner, set by the very
//! compare-and-swap that takes the lock, so no window leaves a lock held by nobody known. A
//! waiter sleeps on the futex in slices of at most [`LIVENESS_POLL`]; after a slice in which the
//! word did not change it asks whether the owner is alive (`kill(pid, 0)`, not a zombie, and the
//! start time recorded with the pid, so that a reused pid is not taken for the owner, as
//! [`holders`](crate::holders) does). If not, it swaps the dead owner's word for 0 (one waiter
//! wins), wakes the others and reports the dead owner (pid, thread, the name the owner recorded)
//! once: the lock is then free. A lock held by a thread that ended in a live process is held,
//! not dead: a `Lock` may be released by another thread.
//!
//! **Deadlocks across processes.** A thread about to sleep on a lock publishes itself in the
//! lock's table of waiters ([`WAITER_SLOTS`] slots of pid, thread id and whether the wait has a
//! deadline) and walks, through the locks this process maps ([`register`]), owner -> the lock
//! that owner waits for -> its owner ...; a walk that comes back to the walker through waits
//! with no deadline is a deadlock ([`Acquire::Deadlock`]). Before reporting, the walker looks
//! again after a moment and reports only the same cycle found twice (a wait that just ended
//! leaves its record for an instant), and only the waiter with the smallest (pid, thread) of
//! the cycle reports, so one process of the cycle raises and the others wait on (for it to give
//! up what it holds). The walk runs after each sleep that ended with the lock still held (at
//! most [`LIVENESS_POLL`], shorter when the caller waits in slices), not before the first:
//! most waits end before, and a deadlock waits for ever. A thread waiting for a plain lock it holds itself is not a deadlock (any
//! thread may release a `Lock`: it is a signal), as in the in-process wait graph.
//!
//! The owner's pid is the process's as the kernel numbers it.
//!
//! What the code taught: counting sleepers beside the word (as glibc's semaphores do) made a
//! release call the kernel whenever the count was not zero, which, with two processes taking
//! turns, is every release for as long as a woken waiter takes to run again (microseconds on a
//! virtual machine, a hundred releases): the holder paid a wake-up call per release. The
//! contended bit is cleared by the release that wakes, so a holder pays one call per sleep of
//! its peer.

use crate::futex_word::Spin;
use crate::holders::{alive, start_time};
use crate::os_threads::fork_generation;
use crate::shm::Region;
use rustix::fd::BorrowedFd;
use rustix::thread::futex;
use std::cell::Cell;
use std::io;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a waiter sleeps before it asks whether the owner is still alive.
pub const LIVENESS_POLL: Duration = Duration::from_millis(100);
/// The most pauses a lock's waiter spends looking for it to come free before it sets a wait up:
/// a critical section between processes is usually that short, and a sleep costs both sides a
/// system call. Adapted per lock and process ([`Spin`]), because on a busy machine the holder
/// may need the core the waiter spins on.
pub const SPIN: u32 = 128;
/// The largest count of a semaphore (`SEM_VALUE_MAX`).
pub const VALUE_MAX: u32 = i32::MAX as u32;
/// Waiters a lock lists for deadlock detection (more wait unlisted, undetected).
pub const WAITER_SLOTS: usize = 32;
/// The longest chain of waits a walk follows.
const MAX_WALK: usize = 64;
/// In a waiter slot: the wait has a deadline.
const TIMED: u64 = 1 << 31;
/// Bytes of an owner's name kept in the lock.
const NAME_BYTES: usize = 64;
/// Processes whose names a lock keeps (a process past these takes a slot over).
const NAME_SLOTS: usize = 8;
/// In a name slot's pid: the name is being written.
const WRITING: u32 = u32::MAX;
const MAGIC: u32 = 0x5452_4c4b; // "TRLK"
/// Bytes a lock takes in its arena (a multiple of a cache line, so that two locks never share
/// one).
const SLOT: usize = 1024;
/// Locks an arena holds (a power of two: a lock's identity is its arena's and its slot's).
pub const ARENA_SLOTS: usize = 256;
/// An arena's size: address space, of which only the slots handed out are ever touched.
const ARENA: usize = SLOT * ARENA_SLOTS;
const _: () = assert!(std::mem::size_of::<Shared>() <= SLOT && SLOT % 128 == 0);
/// The start time takes the low 40 bits of a stamp, the pid the rest.
const START_BITS: u32 = 40;
/// In a lock's word: a waiter sleeps, or may (a pid is at most 2^22, `PID_MAX_LIMIT`).
const CONTENDED: u32 = 1 << 31;

/// What a shared lock is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Held by one thread at a time, releasable by any.
    Lock,
    /// Held by one thread, again and again, released by it as many times.
    RLock,
    /// A count, taken and given back by anyone.
    Semaphore,
}

impl Kind {
    fn code(self) -> u32 {
        match self {
            Kind::Lock => 0,
            Kind::RLock => 1,
            Kind::Semaphore => 2,
        }
    }

    fn from_code(code: u32) -> Option<Kind> {
        match code {
            0 => Some(Kind::Lock),
            1 => Some(Kind::RLock),
            2 => Some(Kind::Semaphore),
            _ => None,
        }
    }
}

/// The lock's shared state (all zero but the header when made).
#[repr(C)]
struct Shared {
    magic: AtomicU32,
    kind: AtomicU32,
    maxvalue: AtomicU32,
    /// The futex word: a semaphore's count, or a lock's holder pid (| [`CONTENDED`]).
    word: AtomicU32,
    /// Threads sleeping on a semaphore's word.
    sleepers: AtomicU32,
    /// The holding thread's id (a lock's last taker, an RLock's owner), 0 when free.
    tid: AtomicU32,
    /// An RLock's depth.
    depth: AtomicU32,
    _pad: u32,
    /// The holder's pid and start time ([`stamp`]).
    stamp: AtomicU64,
    /// Dead owners found.
    recovered: AtomicU64,
    /// The names of the processes that took the lock, for reports: each process writes its
    /// own once, so that processes taking turns do not write a name at every acquisition.
    names: [NameSlot; NAME_SLOTS],
    /// Threads sleeping on the lock: `pid << 32 | tid` (| [`TIMED`]), 0 for a free slot.
    waiters: [AtomicU64; WAITER_SLOTS],
}

/// A process's name, as it recorded it in a lock.
#[repr(C)]
struct NameSlot {
    /// The process's pid, 0 for a free slot, [`WRITING`] while a name is written.
    pid: AtomicU32,
    len: AtomicU32,
    name: [AtomicU64; NAME_BYTES / 8],
}

/// A process that died holding a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadOwner {
    /// Its pid.
    pub pid: u32,
    /// The thread that took the lock, if known.
    pub tid: u32,
    /// Its name as it recorded it (`multiprocessing.current_process().name`), or empty.
    pub name: String,
}

/// One wait of a deadlock: `waiter` waits for the lock `lock` ([`SharedLock::id`], the
/// same in every process), which `holder` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleEdge {
    /// The waiting thread's (pid, thread id).
    pub waiter: (u32, u32),
    /// What the lock is.
    pub kind: Kind,
    /// The lock's identity.
    pub lock: u64,
    /// The holding thread's (pid, thread id).
    pub holder: (u32, u32),
    /// The holder's process's name, as recorded in the lock (may be empty).
    pub holder_name: String,
}

/// How a waiter takes part in deadlock detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Watch {
    /// Look for a cycle through this wait.
    pub detect: bool,
    /// The wait has a deadline (it cannot hang for ever: no cycle through it is a deadlock).
    pub timed: bool,
}

/// How an acquisition ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// Taken.
    Taken,
    /// The deadline passed.
    TimedOut,
    /// The owner died holding the lock, which is now free; reported to this caller only.
    OwnerDied(DeadOwner),
    /// The wait closes a cycle of waits across threads and processes: it never ends.
    Deadlock(Vec<CycleEdge>),
}

/// Why a release failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseError {
    /// A lock that is not held, or a bounded semaphore at its bound.
    TooManyReleases,
    /// An RLock released by a thread that does not own it.
    NotOwner,
}

/// Who the calling thread is, as a lock records it.
#[derive(Debug, Clone, Copy)]
struct Me {
    pid: u32,
    tid: u32,
    stamp: u64,
}

thread_local! {
    static ME: Cell<Option<(u64, Me)>> = const { Cell::new(None) };
}

fn stamp(pid: u32, start: u64) -> u64 {
    (u64::from(pid) << START_BITS) | (start & ((1 << START_BITS) - 1))
}

/// The calling thread's pid, thread id and stamp, remembered per thread until the process forks
/// (`gettid`, `getpid` and reading `/proc` are slow on a virtual machine).
fn me() -> Me {
    let generation = fork_generation();
    ME.with(|known| match known.get() {
        Some((found_in, me)) if found_in == generation => me,
        _ => {
            let pid = crate::holders::this_pid();
            let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
            let me = Me {
                pid,
                tid,
                stamp: stamp(pid, start_time(pid).unwrap_or(0)),
            };
            known.set(Some((generation, me)));
            me
        }
    })
}

/// Shared memory for [`ARENA_SLOTS`] locks.
#[derive(Debug)]
struct Arena {
    region: Region,
    /// The memfd's inode number, the same in every process.
    inode: u64,
}

/// Where this process carves its next lock.
struct Carving {
    arena: Arc<Arena>,
    /// The first slot not handed out.
    next: usize,
    /// The fork generation that made the arena: a child carves its own.
    generation: u64,
}

/// The arena this process carves locks out of. Held only for a few instructions, never across
/// a system call, and in the bindings only with the interpreter attached: a fork from Python
/// (which holds the interpreter) never copies it held.
static CARVING: Mutex<Option<Carving>> = Mutex::new(None);

/// The arenas this process maps, so that a lock received maps its arena once.
static ARENAS: Mutex<Vec<Weak<Arena>>> = Mutex::new(Vec::new());

fn not_a_lock() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "not a treadle lock")
}

impl Arena {
    fn create() -> io::Result<Arc<Arena>> {
        let region = Region::create("treadle-locks", ARENA, ARENA)?;
        let inode = rustix::fs::fstat(region.fd())?.st_ino;
        Ok(Arena::listed(region, inode))
    }

    /// The arena whose descriptor another process passed: the one this process maps already,
    /// or a new mapping (of a duplicate of `fd`).
    fn open(fd: BorrowedFd<'_>) -> io::Result<Arc<Arena>> {
        let stat = rustix::fs::fstat(fd)?;
        let known = lock_unpoisoned(&ARENAS)
            .iter()
            .filter_map(Weak::upgrade)
            .find(|arena| arena.inode == stat.st_ino);
        if let Some(arena) = known {
            return Ok(arena);
        }
        if (stat.st_size as u64) < ARENA as u64 {
            return Err(not_a_lock());
        }
        let region = Region::map(fd.try_clone_to_owned()?, ARENA)?;
        Ok(Arena::listed(region, stat.st_ino))
    }

    /// The arena of `region` (whose memfd's inode number is `inode`), listed as mapped.
    fn listed(region: Region, inode: u64) -> Arc<Arena> {
        let arena = Arc::new(Arena { region, inode });
        let mut arenas = lock_unpoisoned(&ARENAS);
        arenas.retain(|weak| weak.strong_count() > 0);
        arenas.push(Arc::downgrade(&arena));
        arena
    }

    /// A slot of this process's carving arena, never handed out before.
    fn carve() -> io::Result<(Arc<Arena>, usize)> {
        let generation = fork_generation();
        let taken = |carving: &mut Option<Carving>| match carving {
            Some(c) if c.generation == generation && c.next < ARENA_SLOTS => {
                c.next += 1;
                Some((Arc::clone(&c.arena), c.next - 1))
            }
            _ => None,
        };
        if let Some(slot) = taken(&mut lock_unpoisoned(&CARVING)) {
            return Ok(slot);
        }
        // A new arena, made without the mutex held; another thread may have made one meanwhile,
        // in which case this one is dropped unused.
        let arena = Arena::create()?;
        let mut carving = lock_unpoisoned(&CARVING);
        if let Some(slot) = taken(&mut carving) {
            return Ok(slot);
        }
        *carving = Some(Carving {
            arena: Arc::clone(&arena),
            next: 1,
            generation,
        });
        Ok((arena, 0))
    }
}

fn lock_unpoisoned<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A lock or semaphore in shared memory.
#[derive(Debug)]
pub struct SharedLock {
    arena: Arc<Arena>,
    /// The lock's slot in its arena.
    slot: usize,
    kind: Kind,
    maxvalue: u32,
    /// How long this process's waiters look for the lock to come free before they sleep,
    /// adapted to how that went (on a busy machine the holder may need the core).
    spin: Spin,
    /// The lock's identity in every process: its arena's inode number and its slot.
    id: u64,
    /// One more than the fork generation in which this process recorded its name (0: not
    /// yet), so that a child, whose pid is another, records its own.
    named_in: AtomicU64,
}

/// The locks this process maps, for the deadlock walk.
static MAPPED: Mutex<Vec<Weak<SharedLock>>> = Mutex::new(Vec::new());

/// Lists `lock` among the locks a deadlock walk looks through.
pub fn register(lock: &Arc<SharedLock>) {
    let mut mapped = lock_unpoisoned(&MAPPED);
    mapped.retain(|weak| weak.strong_count() > 0);
    mapped.push(Arc::downgrade(lock));
}

fn mapped_locks() -> Vec<Arc<SharedLock>> {
    lock_unpoisoned(&MAPPED)
        .iter()
        .filter_map(Weak::upgrade)
        .collect()
}

impl SharedLock {
    /// A new lock of `kind`; a semaphore starts at `value` and may not be released past
    /// `maxvalue`.
    pub fn create(kind: Kind, value: u32, maxvalue: u32) -> io::Result<SharedLock> {
        let (arena, slot) = Arena::carve()?;
        let lock = SharedLock::in_slot(arena, slot, kind, maxvalue);
        let shared = lock.shared();
        shared.kind.store(kind.code(), Ordering::Relaxed);
        shared.maxvalue.store(maxvalue, Ordering::Relaxed);
        if kind == Kind::Semaphore {
            shared.word.store(value, Ordering::Relaxed);
        }
        shared.magic.store(MAGIC, Ordering::Release);
        Ok(lock)
    }

    /// Opens the lock in `slot` of the arena whose descriptor another process passed (the
    /// lock keeps a duplicate of it if this process did not map the arena yet).
    pub fn open(fd: BorrowedFd<'_>, slot: usize) -> io::Result<SharedLock> {
        if slot >= ARENA_SLOTS {
            return Err(not_a_lock());
        }
        let arena = Arena::open(fd)?;
        // SAFETY: the arena maps ARENA bytes, backed (checked when it was mapped), and the slot
        // is within it; a slot is made of atomics only, which any bit pattern is valid for.
        let shared = unsafe { &*Self::slot_of(&arena, slot) };
        let kind = Kind::from_code(shared.kind.load(Ordering::Relaxed));
        match kind {
            Some(kind) if shared.magic.load(Ordering::Acquire) == MAGIC => {
                let maxvalue = shared.maxvalue.load(Ordering::Relaxed);
                Ok(SharedLock::in_slot(arena, slot, kind, maxvalue))
            }
            _ => Err(not_a_lock()),
        }
    }

    fn in_slot(arena: Arc<Arena>, slot: usize, kind: Kind, maxvalue: u32) -> SharedLock {
        SharedLock {
            spin: Spin::up_to(SPIN),
            id: (arena.inode << ARENA_SLOTS.trailing_zeros()) | slot as u64,
            named_in: AtomicU64::new(0),
            arena,
            slot,
            kind,
            maxvalue,
        }
    }

    fn slot_of(arena: &Arena, slot: usize) -> *const Shared {
        arena
            .region
            .base()
            .wrapping_add(slot * SLOT)
            .cast::<Shared>()
    }

    #[inline]
    fn shared(&self) -> &Shared {
        // SAFETY: the arena maps ARENA bytes, backed, for as long as `self` holds it; the slot
        // (< ARENA_SLOTS) is SLOT bytes (more than `Shared`) at a 1024-byte offset of a
        // page-aligned base, and `Shared` is made of atomics only, valid for any contents.
        unsafe { &*Self::slot_of(&self.arena, self.slot) }
    }

    /// The arena's descriptor, to pass to another process (with [`SharedLock::slot`]).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.arena.region.fd()
    }

    /// The lock's slot in its arena.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// What the lock is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// A semaphore's bound ([`VALUE_MAX`] if none); 1 for a lock.
    pub fn maxvalue(&self) -> u32 {
        self.maxvalue
    }

    /// Times a waiter found the owner dead.
    pub fn recovered(&self) -> u64 {
        self.shared().recovered.load(Ordering::Relaxed)
    }

    /// Tries once. An RLock its caller owns is taken again.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        match self.kind {
            Kind::Semaphore => self.try_take_count(),
            Kind::Lock | Kind::RLock => {
                let me = me();
                if self.kind == Kind::RLock && self.owned_by(me) {
                    let depth = &self.shared().depth;
                    depth.store(depth.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    return true;
                }
                let taken = self
                    .shared()
                    .word
                    .compare_exchange(0, me.pid, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok();
                if taken {
                    self.record_holder(me);
                }
                taken
            }
        }
    }

    /// Tries for [`SPIN`] pauses: for a caller about to wait, who would otherwise pay for
    /// setting a wait up (a deadline, leaving the interpreter) for a lock that is about to come
    /// free.
    pub fn try_acquire_soon(&self) -> bool {
        // Looks before it tries: a compare-and-swap in a loop would take the holder's cache
        // line from it.
        self.spin.until(SPIN, || {
            self.shared().word.load(Ordering::Relaxed) == 0 && self.try_acquire()
        })
    }

    /// Takes the lock (or one of the count) before `deadline` (`None`: no limit), a lock's
    /// wait watched for deadlocks as `watch` says.
    pub fn acquire_until(&self, deadline: Option<Instant>, watch: Watch) -> Acquire {
        if self.try_acquire() {
            return Acquire::Taken;
        }
        match self.kind {
            Kind::Semaphore => self.wait_for_count(deadline),
            Kind::Lock | Kind::RLock => self.wait_for_lock(me(), deadline, watch),
        }
    }

    /// The lock's identity in every process (its arena's inode number and its slot).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Gives the lock (or one of the count) back.
    pub fn release(&self) -> Result<(), ReleaseError> {
        let shared = self.shared();
        match self.kind {
            Kind::Semaphore => {
                shared
                    .word
                    .fetch_update(Ordering::Release, Ordering::Relaxed, |value| {
                        (value < self.maxvalue).then_some(value + 1)
                    })
                    .map_err(|_| ReleaseError::TooManyReleases)?;
                fence(Ordering::SeqCst);
                if shared.sleepers.load(Ordering::Relaxed) != 0 {
                    let _ = futex::wake(&shared.word, futex::Flags::empty(), 1);
                }
                Ok(())
            }
            Kind::RLock => {
                if !self.owned_by(me()) {
                    return Err(ReleaseError::NotOwner);
                }
                let depth = shared.depth.load(Ordering::Relaxed) - 1;
                shared.depth.store(depth, Ordering::Relaxed);
                if depth == 0 {
                    self.unlock();
                }
                Ok(())
            }
            Kind::Lock => {
                if shared.word.load(Ordering::Relaxed) == 0 {
                    return Err(ReleaseError::TooManyReleases);
                }
                self.unlock();
                Ok(())
            }
        }
    }

    /// A semaphore's count; for a lock, 1 when free and 0 when held.
    pub fn value(&self) -> u32 {
        let word = self.shared().word.load(Ordering::Relaxed);
        match self.kind {
            Kind::Semaphore => word,
            Kind::Lock | Kind::RLock => u32::from(word == 0),
        }
    }

    /// Whether the calling thread holds the lock (a lock: took it last and it is held).
    pub fn is_mine(&self) -> bool {
        self.kind != Kind::Semaphore && self.owned_by(me())
    }

    /// How many times this process holds the lock: an RLock's depth, 1 for a lock, 0 if another
    /// process (or nobody) holds it; a semaphore's count is not per process (0).
    pub fn count_here(&self) -> u32 {
        let shared = self.shared();
        let me = me();
        if self.kind == Kind::Semaphore
            || shared.word.load(Ordering::Relaxed) & !CONTENDED != me.pid
        {
            return 0;
        }
        match self.kind {
            Kind::RLock => shared.depth.load(Ordering::Relaxed),
            _ => 1,
        }
    }

    /// The holder's pid and thread (0 if none, or not a lock).
    pub fn holder(&self) -> (u32, u32) {
        let shared = self.shared();
        if self.kind == Kind::Semaphore {
            return (0, 0);
        }
        let pid = shared.word.load(Ordering::Acquire) & !CONTENDED;
        (
            pid,
            if pid == 0 {
                0
            } else {
                shared.tid.load(Ordering::Relaxed)
            },
        )
    }

    /// Records `name` as this process's in the lock, for the report of a dead owner or a
    /// deadlock.
    pub fn record_name(&self, name: &str) {
        let names = &self.shared().names;
        let pid = me().pid;
        // This process's slot, a free one, or (past NAME_SLOTS processes) one taken over.
        let slot = names
            .iter()
            .find(|slot| slot.pid.load(Ordering::Relaxed) == pid)
            .or_else(|| {
                names.iter().find(|slot| {
                    slot.pid
                        .compare_exchange(0, WRITING, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                })
            })
            .unwrap_or(&names[pid as usize % NAME_SLOTS]);
        slot.pid.store(WRITING, Ordering::Relaxed);
        let bytes = name.as_bytes();
        let len = bytes.len().min(NAME_BYTES);
        let mut words = [0u8; NAME_BYTES];
        words[..len].copy_from_slice(&bytes[..len]);
        for (word_slot, chunk) in slot.name.iter().zip(words.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            word_slot.store(u64::from_ne_bytes(word), Ordering::Relaxed);
        }
        slot.len.store(len as u32, Ordering::Relaxed);
        slot.pid.store(pid, Ordering::Release);
        self.named_in
            .store(fork_generation() + 1, Ordering::Relaxed);
    }

    /// Whether this process has recorded its name in the lock.
    #[inline]
    pub fn name_recorded(&self) -> bool {
        self.named_in.load(Ordering::Relaxed) == fork_generation() + 1
    }

    fn recorded_name(&self, pid: u32) -> String {
        let Some(slot) = self
            .shared()
            .names
            .iter()
            .find(|slot| slot.pid.load(Ordering::Acquire) == pid)
        else {
            return String::new();
        };
        let mut bytes = Vec::with_capacity(NAME_BYTES);
        for word in &slot.name {
            bytes.extend_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        bytes.truncate((slot.len.load(Ordering::Relaxed) as usize).min(NAME_BYTES));
        if slot.pid.load(Ordering::Acquire) != pid {
            return String::new(); // taken over while read
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[inline]
    fn owned_by(&self, me: Me) -> bool {
        let shared = self.shared();
        shared.word.load(Ordering::Relaxed) & !CONTENDED == me.pid
            && shared.tid.load(Ordering::Relaxed) == me.tid
    }

    #[inline]
    fn record_holder(&self, me: Me) {
        let shared = self.shared();
        shared.tid.store(me.tid, Ordering::Relaxed);
        shared.stamp.store(me.stamp, Ordering::Relaxed);
        if self.kind == Kind::RLock {
            shared.depth.store(1, Ordering::Relaxed);
        }
    }

    fn unlock(&self) {
        let shared = self.shared();
        shared.tid.store(0, Ordering::Relaxed);
        // A waiter sets the bit (on the word this swaps) before it sleeps: either this sees
        // the bit, or the waiter sees the word change and does not sleep.
        if shared.word.swap(0, Ordering::Release) & CONTENDED != 0 {
            let _ = futex::wake(&shared.word, futex::Flags::empty(), 1);
        }
    }

    fn try_take_count(&self) -> bool {
        self.shared()
            .word
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |value| {
                value.checked_sub(1)
            })
            .is_ok()
    }

    #[cold]
    fn wait_for_count(&self, deadline: Option<Instant>) -> Acquire {
        let shared = self.shared();
        loop {
            if self.try_take_count() {
                return Acquire::Taken;
            }
            let Some(timeout) = slice(deadline, None) else {
                return Acquire::TimedOut;
            };
            shared.sleepers.fetch_add(1, Ordering::SeqCst);
            let _ = futex::wait(&shared.word, futex::Flags::empty(), 0, Some(&timeout));
            shared.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[cold]
    fn wait_for_lock(&self, me: Me, deadline: Option<Instant>, watch: Watch) -> Acquire {
        let shared = self.shared();
        let _listed = Listed::new(self, me, watch.timed);
        // The first look after the first sleep in vain: most waits end before.
        let mut look = false;
        loop {
            if look {
                look = false;
                if let Some(cycle) = self.confirmed_cycle(me) {
                    return Acquire::Deadlock(cycle);
                }
            }
            let word = shared.word.load(Ordering::Relaxed);
            if word == 0 {
                // Taken marked contended: other waiters may sleep, and this one's release must
                // wake one of them.
                if shared
                    .word
                    .compare_exchange(0, me.pid | CONTENDED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.record_holder(me);
                    return Acquire::Taken;
                }
                continue;
            }
            if word & CONTENDED == 0
                && shared
                    .word
                    .compare_exchange(word, word | CONTENDED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let word = word | CONTENDED;
            let Some(timeout) = slice(deadline, Some(LIVENESS_POLL)) else {
                return Acquire::TimedOut;
            };
            let slept = futex::wait(&shared.word, futex::Flags::empty(), word, Some(&timeout));
            if slept == Err(rustix::io::Errno::TIMEDOUT)
                && shared.word.load(Ordering::Relaxed) == word
            {
                if let Some(dead) = self.take_from_dead(word) {
                    return Acquire::OwnerDied(dead);
                }
                look = watch.detect && !watch.timed;
            }
        }
    }

    /// If the owner in `word` is dead, frees the lock (if the word is still `word`: one waiter
    /// does) and says who died.
    #[cold]
    fn take_from_dead(&self, word: u32) -> Option<DeadOwner> {
        let shared = self.shared();
        let pid = word & !CONTENDED;
        let recorded = shared.stamp.load(Ordering::Relaxed);
        let start = if (recorded >> START_BITS) as u32 == pid {
            recorded & ((1 << START_BITS) - 1)
        } else {
            0 // the owner died (or is still) between taking the word and recording itself
        };
        if alive(pid, start) {
            return None;
        }
        let tid = shared.tid.load(Ordering::Relaxed);
        let name = self.recorded_name(pid);
        // Taken from the dead (one waiter wins), then let go of.
        let me = me();
        if shared
            .word
            .compare_exchange(word, me.pid, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        shared.depth.store(0, Ordering::Relaxed);
        shared.recovered.fetch_add(1, Ordering::Relaxed);
        shared.tid.store(0, Ordering::Relaxed);
        shared.word.store(0, Ordering::SeqCst);
        let _ = futex::wake(&shared.word, futex::Flags::empty(), u32::MAX);
        Some(DeadOwner { pid, tid, name })
    }
}

/// A waiter's entry in a lock's table of waiters, for as long as it lives.
struct Listed<'a> {
    slot: Option<&'a AtomicU64>,
}

impl<'a> Listed<'a> {
    fn new(lock: &'a SharedLock, me: Me, timed: bool) -> Listed<'a> {
        let entry = (u64::from(me.pid) << 32) | u64::from(me.tid) | if timed { TIMED } else { 0 };
        let slot = lock.shared().waiters.iter().find(|slot| {
            slot.load(Ordering::Relaxed) == 0
                && slot
                    .compare_exchange(0, entry, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
        });
        Listed { slot }
    }
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            slot.store(0, Ordering::SeqCst);
        }
    }
}

impl SharedLock {
    /// Whether thread `who` (pid, tid) is listed as waiting for this lock with no deadline.
    fn waited_for_by(&self, who: (u32, u32)) -> bool {
        let entry = (u64::from(who.0) << 32) | u64::from(who.1);
        self.shared()
            .waiters
            .iter()
            .any(|slot| slot.load(Ordering::SeqCst) == entry)
    }

    /// The cycle of waits from `me`, waiting for this lock, back to `me`, if there is one.
    fn cycle_from(&self, me: Me, locks: &[Arc<SharedLock>]) -> Option<Vec<CycleEdge>> {
        let mut edges = Vec::new();
        let mut waiter = (me.pid, me.tid);
        let mut lock = self;
        for _ in 0..MAX_WALK {
            let holder = lock.holder();
            if holder.0 == 0 || holder.1 == 0 {
                return None;
            }
            edges.push(CycleEdge {
                waiter,
                kind: lock.kind,
                lock: lock.id,
                holder,
                holder_name: lock.recorded_name(holder.0),
            });
            if holder == (me.pid, me.tid) {
                // Waiting for a plain lock one holds oneself is waiting for a signal.
                let signal = edges.len() == 1 && lock.kind == Kind::Lock;
                return (!signal).then_some(edges);
            }
            lock = locks.iter().find(|other| other.waited_for_by(holder))?;
            waiter = holder;
        }
        None
    }

    /// A cycle through `me`'s wait for this lock, found twice a moment apart, that `me` is the
    /// one of its waiters to report (the smallest pid and thread id).
    #[cold]
    fn confirmed_cycle(&self, me: Me) -> Option<Vec<CycleEdge>> {
        let locks = mapped_locks();
        let cycle = self.cycle_from(me, &locks)?;
        if cycle.iter().any(|edge| edge.waiter < (me.pid, me.tid)) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
        let again = self.cycle_from(me, &locks)?;
        (again == cycle).then_some(cycle)
    }
}

/// How long the next sleep may last: until `deadline`, at most `poll`; `None` once the deadline
/// has passed.
fn slice(deadline: Option<Instant>, poll: Option<Duration>) -> Option<futex::Timespec> {
    let left = match deadline {
        Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => return None,
        },
        None => None,
    };
    let sleep = match (left, poll) {
        (Some(left), Some(poll)) => left.min(poll),
        (Some(left), None) => left,
        (None, Some(poll)) => poll,
        // A semaphore's untimed sleep still ends now and then: block_on's caller may slice.
        (None, None) => Duration::from_secs(1),
    };
    Some(futex::Timespec {
        tv_sec: sleep.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: i64::from(sleep.subsec_nanos()),
    })
}

#[cfg(test)]
mod tests;
