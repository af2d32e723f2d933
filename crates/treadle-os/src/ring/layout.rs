//! The ring's memory: the header page (every field shared between processes), positions, and
//! making or opening a ring; who holds it.

use crate::holders::{self, this_pid, Holders, Role};
use crate::robust::RobustMutex;
use crate::shm::Region;
use rustix::event::{eventfd, EventfdFlags};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bytes a block holds, its own header included.
pub const BLOCK: usize = 64 * 1024;
/// A block's own header: the link to the next block.
pub(super) const BLOCK_HEADER: usize = 8;
/// A record's header: payload length (u32) and kind (u32).
pub(super) const RECORD_HEADER: usize = 8;
/// The header page.
pub(super) const HEADER_PAGE: usize = 4096;
const MAGIC: u64 = 0x7472_6561_646c_6531; // "treadle1"

/// Spin-loop pauses before a wait parks, at most (about 12 us here): a hand-off between two
/// processes that both run is usually that close, and a futex sleep and wake-up cost more.
///
/// A reader adapts it (per ring, in its process): a spin that saw the record come doubles the
/// next one, a spin in vain halves it (down to a floor). When the machine is busy the other
/// process is often not running at all, and a spin only takes the core it needs: a round trip
/// would cost the spin and the wake-up both.
pub(super) const SPIN: u32 = 1024;
/// The largest payload one record may carry.
pub const MAX_RECORD: usize = u32::MAX as usize;

/// The header page. Fields one side writes often are kept on cache lines apart from the other
/// side's.
#[repr(C, align(64))]
pub(super) struct Header {
    pub(super) magic: u64,
    pub(super) max_blocks: u32,
    _pad0: u32,
    /// The most records the ring holds at once; 0 for no limit.
    pub(super) maxsize: u64,
    /// Times a writer found the write lock's owner dead (and dropped its partial record).
    pub(super) writers_recovered: AtomicU64,
    _pad1: [u64; 4],
    // -- the writers' side
    pub(super) write_lock: RobustMutex,
    /// Blocks ever handed out (the next never-used block).
    pub(super) high_water: AtomicU32,
    /// The free stack: tag << 32 | (index + 1), 0 when empty.
    pub(super) free: AtomicU64,
    /// The end of the last published record: block << 32 | offset.
    pub(super) published: AtomicU64,
    /// Records published, ever.
    pub(super) put_count: AtomicU64,
    _pad2: [u64; 4],
    // -- the readers' side
    pub(super) read_lock: RobustMutex,
    /// Where the next record starts: block << 32 | offset.
    pub(super) read_pos: AtomicU64,
    /// Records taken, ever.
    pub(super) got_count: AtomicU64,
    _pad3: [u64; 6],
    // -- waking
    pub(super) data_seq: AtomicU32,
    pub(super) readers_waiting: AtomicU32,
    pub(super) space_seq: AtomicU32,
    pub(super) writers_waiting: AtomicU32,
    // -- JoinableQueue's count of unfinished tasks
    pub(super) unfinished: AtomicU64,
    pub(super) unfinished_seq: AtomicU32,
    pub(super) unfinished_waiting: AtomicU32,
    // -- readiness for poll()/select() on the eventfd, once someone asked for a descriptor
    pub(super) pollable: AtomicU32,
    pub(super) signalled: AtomicU32,
    // -- who holds the ring
    pub(super) holders: Holders,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_PAGE);

/// A block's header.
#[repr(C)]
pub(super) struct BlockHeader {
    /// The next block of the chain (or of the free stack): index + 1, 0 for none.
    pub(super) next: AtomicU32,
}

/// A channel in shared memory; see the module's documentation.
#[derive(Debug)]
pub struct Ring {
    pub(super) region: Region,
    /// Readable while a record waits (or no writer is left), for poll() and select().
    pub(super) events: OwnedFd,
    /// How long this process's readers spin for a record before they sleep (see `wait.rs`).
    pub(super) spin: AtomicU32,
}

/// Who could still write to a ring, as a reader sees it (see [`Ring::writers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writers {
    /// Write handles that live processes other than this one hold; `None` when that cannot be
    /// told (a handle is in transit to a process that has not opened it, or too many processes
    /// held the ring to list them all).
    pub elsewhere: Option<u32>,
    /// Write handles this process holds.
    pub here: u32,
}

#[inline]
pub(super) fn pack(block: u32, offset: u32) -> u64 {
    (u64::from(block) << 32) | u64::from(offset)
}

#[inline]
pub(super) fn unpack(position: u64) -> (u32, u32) {
    ((position >> 32) as u32, position as u32)
}

#[inline]
pub(super) fn pad8(n: usize) -> usize {
    (n + 7) & !7
}

impl Ring {
    /// A new, empty ring that may hold up to `reserved` bytes of blocks (rounded to blocks; less
    /// if the system will not reserve that much address space) and, if `maxsize` is not 0, that
    /// many records.
    pub fn create(reserved: usize, maxsize: u64) -> io::Result<Self> {
        let max_blocks = (reserved / BLOCK).clamp(2, u32::MAX as usize - 1);
        let region = Region::create(
            "treadle-channel",
            HEADER_PAGE + BLOCK,
            HEADER_PAGE + max_blocks * BLOCK,
        )?;
        let max_blocks = (region.reserved() - HEADER_PAGE) / BLOCK;
        let events = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let header = region.base().cast::<Header>();
        // SAFETY: the region is fresh (zeroed, and no other process has its descriptor yet) and
        // at least a header page long; the header is written before anyone else can see it.
        unsafe {
            RobustMutex::init(std::ptr::addr_of_mut!((*header).write_lock))?;
            RobustMutex::init(std::ptr::addr_of_mut!((*header).read_lock))?;
            (*header).max_blocks = max_blocks as u32;
            (*header).maxsize = maxsize;
            (*header).high_water = AtomicU32::new(1);
            (*header).published = AtomicU64::new(pack(0, BLOCK_HEADER as u32));
            (*header).read_pos = AtomicU64::new(pack(0, BLOCK_HEADER as u32));
            (*header).magic = MAGIC;
        }
        Ok(Self {
            region,
            events,
            spin: AtomicU32::new(SPIN),
        })
    }

    /// Maps a ring made (by [`Ring::create`]) in this or another process, from its two
    /// descriptors ([`Ring::fds`]).
    pub fn open(fd: OwnedFd, events: OwnedFd) -> io::Result<Self> {
        let size = rustix::fs::fstat(&fd)?.st_size as usize;
        if size < HEADER_PAGE + BLOCK {
            return Err(not_a_channel());
        }
        // Map the header first to learn the reservation.
        let probe = Region::map(fd, HEADER_PAGE)?;
        // SAFETY: the region is at least a header page long (checked above); the two fields are
        // written once, by the creator, before the descriptor left its process.
        let (magic, max_blocks) = unsafe {
            let header = probe.base().cast::<Header>();
            (
                std::ptr::addr_of!((*header).magic).read_volatile(),
                std::ptr::addr_of!((*header).max_blocks).read_volatile(),
            )
        };
        if magic != MAGIC || max_blocks < 2 {
            return Err(not_a_channel());
        }
        let fd = probe.fd().try_clone_to_owned()?;
        drop(probe);
        let region = Region::map(fd, HEADER_PAGE + max_blocks as usize * BLOCK)?;
        Ok(Self {
            region,
            events,
            spin: AtomicU32::new(SPIN),
        })
    }

    /// The region's descriptor and the readiness eventfd, to pass to another process.
    pub fn fds(&self) -> (BorrowedFd<'_>, BorrowedFd<'_>) {
        (self.region.fd(), self.events.as_fd())
    }

    #[inline]
    pub(super) fn header(&self) -> &Header {
        // SAFETY: the region starts with an initialized header (create/open checked) and lives
        // as long as self; every field other processes change is atomic (or a robust mutex).
        unsafe { &*self.region.base().cast::<Header>() }
    }

    #[inline]
    pub(super) fn block_ptr(&self, block: u32) -> *mut u8 {
        debug_assert!(block < self.header().max_blocks);
        // SAFETY: callers pass blocks below high_water (so below max_blocks), which the region
        // backs; the arithmetic stays inside the reservation.
        unsafe { self.region.base().add(HEADER_PAGE + block as usize * BLOCK) }
    }

    #[inline]
    pub(super) fn block_header(&self, block: u32) -> &BlockHeader {
        // SAFETY: as in block_ptr; a block starts with its header, an atomic.
        unsafe { &*self.block_ptr(block).cast::<BlockHeader>() }
    }

    /// Records in the ring now (a snapshot).
    pub fn len(&self) -> u64 {
        let header = self.header();
        let got = header.got_count.load(Ordering::Acquire);
        header.put_count.load(Ordering::Acquire).saturating_sub(got)
    }

    /// Whether no record is published and not yet taken.
    #[inline]
    pub fn is_empty(&self) -> bool {
        let header = self.header();
        header.read_pos.load(Ordering::Acquire) == header.published.load(Ordering::Acquire)
    }

    /// The most records the ring holds at once; 0 for no limit.
    pub fn maxsize(&self) -> u64 {
        self.header().maxsize
    }

    /// Whether a bounded ring holds as many records as it may.
    pub fn is_full(&self) -> bool {
        let maxsize = self.maxsize();
        maxsize != 0 && self.len() >= maxsize
    }

    /// Bytes of blocks the ring may use (its reservation).
    pub fn capacity(&self) -> usize {
        self.header().max_blocks as usize * BLOCK
    }

    /// Times a writer found that the previous one died holding the write lock, and dropped the
    /// record it had not published.
    pub fn writers_recovered(&self) -> u64 {
        self.header().writers_recovered.load(Ordering::Acquire)
    }

    // -- holders --------------------------------------------------------------------------------

    /// Counts a handle of `role` in this process (see [`crate::holders`]).
    pub fn attach(&self, role: Role) {
        let pid = this_pid();
        self.attach_for(pid, holders::start_time(pid).unwrap_or(0), role);
    }

    /// Counts a handle of `role` in process `pid` (started at `start`, 0 if unknown): a child
    /// that was sent the handle and will adopt this count when it opens it.
    pub fn attach_for(&self, pid: u32, start: u64, role: Role) {
        self.header().holders.attach(pid, start, role);
    }

    /// Lets go of a handle of `role` in this process. Waiters wake (a reader may now see that
    /// nobody can write), and once no writer is left, pollers see the descriptor readable.
    pub fn detach(&self, role: Role) {
        self.header().holders.detach(this_pid(), role);
        self.after_letting_go(role);
    }

    /// Lets go of a handle of `role` in this process that its parent counts for it (adopted),
    /// perhaps not yet: see [`Holders::detach_adopted`].
    pub fn detach_adopted(&self, role: Role) {
        let pid = this_pid();
        self.header()
            .holders
            .detach_adopted(pid, holders::start_time(pid).unwrap_or(0), role);
        self.after_letting_go(role);
    }

    /// Counts a handle sent to a process that has not opened it yet (see [`crate::holders`]).
    pub fn send_handle(&self) {
        self.header().holders.send();
    }

    /// A handle counted by [`Ring::send_handle`] was opened (or will never be). If it was the
    /// last in transit and every writer has let go meanwhile, pollers see the end now.
    pub fn handle_arrived(&self) {
        self.header().holders.arrived();
        self.after_letting_go(Role::Write);
    }

    /// Waiters wake (a reader may now see that nobody can write), and once no writer is left,
    /// pollers see the descriptor readable.
    fn after_letting_go(&self, role: Role) {
        self.wake_all();
        if role == Role::Write && self.header().holders.listed_anywhere(Role::Write) == Some(0) {
            self.signal();
        }
    }

    /// Who could still write to the ring (this costs a look at `/proc` per holder: for a
    /// waiting reader's periodic check, not a hot path).
    pub fn writers(&self) -> Writers {
        let holders = &self.header().holders;
        let pid = this_pid();
        Writers {
            elsewhere: holders.elsewhere(pid, Role::Write),
            here: holders.here(pid, Role::Write),
        }
    }

    /// Handles of `role` listed in the table, the dead's included (one load: a cheap look on a
    /// hot path): `Some(0)` once every holder of that role let go, `None` if that cannot be told.
    pub fn listed(&self, role: Role) -> Option<u32> {
        self.header().holders.listed_anywhere(role)
    }

    /// Handles of `role` this process holds.
    pub fn held_here(&self, role: Role) -> u32 {
        self.header().holders.here(this_pid(), role)
    }

    /// Handles of `role` held by live processes other than this one (`None`: cannot tell).
    pub fn held_elsewhere(&self, role: Role) -> Option<u32> {
        self.header().holders.elsewhere(this_pid(), role)
    }
}

fn not_a_channel() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "not a treadle channel")
}
