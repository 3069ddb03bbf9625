//! The counters' shared memory: a zone (nginx slab pool) shared by all
//! workers and kept across reloads, holding one table of series, each
//! series' recent counts beside it, and the live view's records (failing
//! peers, a ring of recent failures).
//!
//! The table's logic and rendering are in `upstream_cause_core::metrics`,
//! the live view's in `upstream_cause_core::live`; this module places them
//! in the zone and hands them out under the slab pool's mutex, and renders
//! the tables for the scrape. What is
//! counted is each module's (HTTP's: `http/count.rs`), and so is the
//! location that serves the scrape (`http/metrics.rs`).

use core::alloc::Layout;
use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, Ordering};

use ngx::allocator::Allocator;
use ngx::core::{SlabPool, Status};
use ngx::ffi::{
    ngx_conf_t, ngx_int_t, ngx_list_t, ngx_log_t, ngx_shared_memory_add, ngx_shm_zone_t, ngx_str_t, NGX_LOG_NOTICE,
    NGX_LOG_WARN,
};
use ngx::ngx_log_error;
use upstream_cause_core::live::{
    peer_hash, Failure, Kind, Live, LiveHeader, PeerRecord, Recent, SuccessFilter, Window,
};
#[cfg(feature = "http")]
use upstream_cause_core::metrics::render_prometheus;
use upstream_cause_core::metrics::{self, Counted, Header, Key, Series};
use upstream_cause_core::render::{FixedBuf, Sink};

use crate::conf::ConfError;

/// Marks a table of this layout (changed layouts start afresh).
const MAGIC: u64 = 0x7563_7a6f_6e65_0003;

/// What the zone holds: bookkeeping, then `capacity` series, their
/// `capacity` windows (same index), `peers` failing peers' records and a
/// ring of `ring` recent failures.
#[repr(C)]
pub struct Shared {
    magic: u64,
    capacity: u64,
    peers: u64,
    ring: u64,
    pub header: Header,
    pub live: LiveHeader,
    /// Failures recorded since the zone started, read without the lock by
    /// the success path (written under it).
    failures: AtomicU64,
}

/// The zone's records, borrowed under its lock.
pub struct Table<'a> {
    pub header: &'a mut Header,
    pub slots: &'a mut [Series],
    pub windows: &'a mut [Window],
    pub live: Live<'a>,
}

impl Shared {
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The zone's records (the caller holds the slab pool's mutex).
    pub fn table(&mut self) -> Table<'_> {
        let (cap, peers, ring) = (self.capacity as usize, self.peers as usize, self.ring as usize);
        // SAFETY: `init_table` allocated, right after this header and
        // zeroed, `capacity` series, `capacity` windows, `peers` records
        // and `ring` recent failures (zeroed, each is empty); the four
        // slices do not overlap, nor the header fields borrowed beside.
        unsafe {
            let slots = ptr::from_mut(self).add(1).cast::<Series>();
            let windows = slots.add(cap).cast::<Window>();
            let records = windows.add(cap).cast::<PeerRecord>();
            let recent = records.add(peers).cast::<Recent>();
            Table {
                header: &mut *ptr::addr_of_mut!(self.header),
                slots: core::slice::from_raw_parts_mut(slots, cap),
                windows: core::slice::from_raw_parts_mut(windows, cap),
                live: Live {
                    header: &mut *ptr::addr_of_mut!(self.live),
                    peers: core::slice::from_raw_parts_mut(records, peers),
                    ring: core::slice::from_raw_parts_mut(recent, ring),
                },
            }
        }
    }

    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub fn slots(&mut self) -> &mut [Series] {
        self.table().slots
    }
}

const _: () = assert!(core::mem::size_of::<Shared>() % 8 == 0);
const _: () = assert!(core::mem::align_of::<Series>() <= 8 && core::mem::align_of::<Window>() <= 8);
const _: () = assert!(core::mem::align_of::<PeerRecord>() <= 8 && core::mem::align_of::<Recent>() <= 8);

/// Bytes of zone per series (and its window).
pub const SERIES_BYTES: usize = core::mem::size_of::<Series>() + core::mem::size_of::<Window>();
/// Bytes of zone per failing peer's record, and per recent failure.
pub const PEER_BYTES: usize = core::mem::size_of::<PeerRecord>();
pub const RECENT_BYTES: usize = core::mem::size_of::<Recent>();

// A table is reused across reloads and binary upgrades when its MAGIC
// matches: records of other sizes need another MAGIC.
#[cfg(target_pointer_width = "64")]
const _: () =
    assert!(SERIES_BYTES == 272 + 112 && PEER_BYTES == 640 && RECENT_BYTES == 640 && MAGIC == 0x7563_7a6f_6e65_0003);

/// Registers the zone `upstream_cause_zone` names, for the module `tag`
/// (its `ngx_module_t`: nginx tells zones apart by name and tag).
pub fn add<'a>(
    cf: &mut ngx_conf_t,
    name: &'a ngx_str_t,
    size: usize,
    tag: *mut c_void,
) -> Result<*mut ngx_shm_zone_t, ConfError<'a>> {
    let mut shm_name = *name;
    // SAFETY: nginx's cf; the tag is the module's, unique per zone owner.
    let zone = unsafe { ngx_shared_memory_add(cf, &mut shm_name, size, tag) };
    // SAFETY: null or the zone nginx registered.
    let z = unsafe { zone.as_mut() }.ok_or(ConfError::Failed)?;
    if !z.data.is_null() {
        return Err(ConfError::DuplicateZone { name: name.as_bytes() });
    }
    z.init = Some(init_zone);
    // (set: the zone is taken)
    z.data = tag;
    Ok(zone)
}

extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    crate::guard(Status::NGX_ERROR.into(), || {
        // SAFETY: nginx calls init with the zone, its slab pool initialised.
        let Some(z) = (unsafe { zone.as_mut() }) else {
            return Status::NGX_ERROR.into();
        };
        // SAFETY: the zone's memory is mapped and its slab pool set up.
        let Some(mut pool) = (unsafe { SlabPool::from_shm_zone(z) }) else {
            return Status::NGX_ERROR.into();
        };
        // Same name and size across a reload: the mapping, and the table in
        // it, are reused as they are.
        let existing = pool.as_ref().data.cast::<Shared>();
        // SAFETY: null or the table this module put there.
        if unsafe { existing.as_ref() }.is_some_and(|s| s.magic == MAGIC) {
            return Status::NGX_OK.into();
        }
        note_size_change(z);
        match init_table(&pool, z.shm.size) {
            Some(t) => {
                pool.as_mut().data = t.as_ptr().cast();
                Status::NGX_OK.into()
            }
            None => Status::NGX_ERROR.into(),
        }
    })
}

/// How a zone of `size` bytes is shared out: an eighth of what the slab
/// pool gives to failing peers' records, an eighth to recent failures (at
/// least one of each), the rest to series and their windows.
pub fn layout(size: usize) -> (usize, usize, usize) {
    let room = size.saturating_sub(size / 64 + 16 * 1024);
    let peers = (room / 8 / PEER_BYTES).max(1);
    let ring = (room / 8 / RECENT_BYTES).max(1);
    let series = room.saturating_sub(peers * PEER_BYTES + ring * RECENT_BYTES) / SERIES_BYTES;
    (series, peers, ring)
}

/// The biggest table the zone's slab pool gives, zeroed.
fn init_table(pool: &SlabPool, zone_size: usize) -> Option<NonNull<Shared>> {
    let head = core::mem::size_of::<Shared>();
    let (mut capacity, peers, ring) = layout(zone_size);
    let rest = peers * PEER_BYTES + ring * RECENT_BYTES;
    let locked = pool.lock();
    while capacity > 0 {
        let layout = Layout::from_size_align(head + capacity * SERIES_BYTES + rest, 8).ok()?;
        if let Ok(mem) = locked.allocate_zeroed(layout) {
            let shared = mem.cast::<Shared>();
            // SAFETY: fresh zeroed memory of the layout's size.
            unsafe {
                (*shared.as_ptr()).magic = MAGIC;
                (*shared.as_ptr()).capacity = capacity as u64;
                (*shared.as_ptr()).peers = peers as u64;
                (*shared.as_ptr()).ring = ring as u64;
                (*shared.as_ptr()).live.started_ms = now_ms();
            }
            return Some(shared);
        }
        capacity -= (capacity / 32).max(1);
    }
    None
}

/// nginx's cached time, in milliseconds since the epoch.
pub fn now_ms() -> u64 {
    // SAFETY: nginx's cached time is set before any module code runs and
    // points at a live slot of its time cache.
    let t = unsafe { ngx::ffi::ngx_cached_time.as_ref() };
    t.map_or(0, |t| {
        u64::try_from(t.sec).unwrap_or(0) * 1000 + u64::try_from(t.msec).unwrap_or(0)
    })
}

/// A zone of the same name with another size in the running configuration:
/// nginx starts it anew, and says so.
fn note_size_change(z: &ngx_shm_zone_t) {
    // SAFETY: during a reload ngx_cycle is still the running cycle.
    let Some(old) = (unsafe { ngx::ffi::ngx_cycle.as_ref() }) else {
        return;
    };
    // SAFETY: the running cycle's list of shared zones.
    for o in unsafe { list_items::<ngx_shm_zone_t>(&old.shared_memory) } {
        if o.tag == z.tag && o.shm.name.as_bytes() == z.shm.name.as_bytes() && o.shm.size != z.shm.size {
            ngx_log_error!(
                NGX_LOG_NOTICE,
                old.log,
                "upstream_cause_zone \"{}\" size changed from {} to {}: its counters start from zero",
                String::from_utf8_lossy(z.shm.name.as_bytes()),
                o.shm.size,
                z.shm.size
            );
        }
    }
}

/// The elements of an nginx list (`ngx_list_t`), part after part.
///
/// # Safety
/// `list` is a live list of `T`s that does not change while the items are
/// borrowed.
unsafe fn list_items<'a, T: 'a>(list: &'a ngx_list_t) -> impl Iterator<Item = &'a T> {
    // SAFETY: see the function's contract: each part's next is null or
    // the list's next part.
    core::iter::successors(Some(&list.part), |p| unsafe { p.next.as_ref() }).flat_map(|p| {
        if p.nelts == 0 || p.elts.is_null() {
            &[]
        } else {
            // SAFETY: a part holds nelts elements of the list's type.
            unsafe { core::slice::from_raw_parts(p.elts.cast::<T>(), p.nelts) }
        }
    })
}

// The scrape is served by the HTTP module (`upstream_cause_metrics`).
#[cfg(feature = "http")]
/// The modules whose zones are ours, by the names nginx gives them: the
/// HTTP module's and the stream module's (another `.so`, whose code this
/// one does not call), and whether each is the stream one.
const OWNERS: [(&[u8], bool); 2] = [
    (b"ngx_http_upstream_cause_module", false),
    (b"ngx_stream_upstream_cause_module", true),
];

#[cfg(feature = "http")]
/// Whether a zone's tag is one of our modules: `Some(true)` for the
/// stream module's.
fn owner(cycle: &ngx::ffi::ngx_cycle_t, tag: *mut c_void) -> Option<bool> {
    let (_, name) = modules(cycle).find(|(m, _)| ptr::eq(ptr::from_ref(*m).cast(), tag.cast_const()))?;
    OWNERS.iter().find(|(n, _)| *n == name).map(|(_, stream)| *stream)
}

#[cfg(feature = "http")]
/// The cycle's modules with their names (a module without one is left out).
pub fn modules(cycle: &ngx::ffi::ngx_cycle_t) -> impl Iterator<Item = (&ngx::ffi::ngx_module_t, &[u8])> {
    let mut m = cycle.modules;
    core::iter::from_fn(move || {
        // SAFETY: the cycle's modules, a null-terminated array of live
        // modules, each with the name nginx set when it loaded it.
        let module = unsafe { m.as_ref().and_then(|p| p.as_ref()) }?;
        // SAFETY: within the null-terminated array (not past its null).
        m = unsafe { m.add(1) };
        Some(module)
    })
    .filter(|module| !module.name.is_null())
    // SAFETY: a module's name is a NUL-terminated string.
    .map(|module| (module, unsafe { core::ffi::CStr::from_ptr(module.name) }.to_bytes()))
}

#[cfg(feature = "http")]
/// The scrape: the counters of the running configuration's zones (HTTP's
/// and stream's: nginx's shared zones are global), in Prometheus text
/// format; `None` when it has none. The gauges sum the zones.
pub fn render(out: &mut impl Sink) -> Option<()> {
    // SAFETY: in a worker, ngx_cycle is its live cycle, and its list of
    // zones does not change while it runs.
    let cycle = unsafe { ngx::ffi::ngx_cycle.as_ref()? };
    let mut snapshot = Vec::new();
    let mut starts: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut header = Header::default();
    let (mut capacity, mut found, mut stream) = (0, false, false);
    // SAFETY: as above.
    for zone in unsafe { list_items::<ngx_shm_zone_t>(&cycle.shared_memory) } {
        let Some(is_stream) = owner(cycle, zone.tag) else {
            continue;
        };
        let read = with_table(ptr::from_ref(zone).cast_mut(), |name, t| {
            snapshot.extend(t.slots().iter().filter(|s| s.family().is_some()).copied());
            starts.push((name.to_vec(), t.live.started_ms));
            (t.header, t.capacity())
        });
        if let Some((h, cap)) = read {
            header.used += h.used;
            header.dropped += h.dropped;
            capacity += cap;
            found = true;
            stream |= is_stream;
        }
    }
    if !found {
        return None;
    }
    render_prometheus(out, &mut snapshot, &header, capacity, stream);
    starts.sort();
    metrics::render_start_times(out, &starts);
    Some(())
}

/// A label value made of parts (a host and its port), on the stack: a
/// host name is at most 253 bytes; the table shortens what is longer than
/// its labels.
pub struct HostPort {
    buf: [u8; 272],
    len: usize,
}

impl HostPort {
    pub fn of(parts: &[&[u8]]) -> HostPort {
        let mut l = HostPort { buf: [0; 272], len: 0 };
        let mut out = FixedBuf::new(&mut l.buf);
        for p in parts {
            out.put(p);
        }
        l.len = out.len();
        l
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// An upstream group's label: its name (an explicit `upstream`
    /// block, `created`), else `host:port` of an implicit one.
    pub fn group(host: &[u8], port: u16, created: bool) -> HostPort {
        if created || port == 0 {
            return HostPort::of(&[host]);
        }
        let mut digits = upstream_cause_core::render::NumBuf::new();
        HostPort::of(&[
            host,
            b":",
            upstream_cause_core::render::fmt_u64(&mut digits, u64::from(port)),
        ])
    }
}

/// Counts each key `keys` gives, in the zone's table under its lock, and
/// records each failed attempt given with its key in the live view; the
/// first time the table overflows in its life, says so once on `log`.
pub fn count(
    zone: *mut ngx_shm_zone_t,
    log: *mut ngx_log_t,
    keys: impl FnOnce(&mut dyn FnMut(&Key<'_>, Option<&Failure<'_>>)),
) {
    let counted = with_table(zone, |zone, t| {
        let mut first_overflow = false;
        let mut recorded = 0;
        let table = t.table();
        let (header, slots, windows, mut live) = (table.header, table.slots, table.windows, table.live);
        keys(&mut |key: &Key<'_>, failure: Option<&Failure<'_>>| {
            let (counted, at) = metrics::count_slot(header, slots, key, 1);
            first_overflow |= matches!(counted, Counted::Overflow { first: true });
            if let Some(f) = failure {
                if let Some(w) = at.and_then(|i| windows.get_mut(i)) {
                    w.add(f.ms / 1000, 1);
                }
                live.failure(f);
                recorded += 1;
            }
        });
        if recorded > 0 {
            t.failures.fetch_add(recorded, Ordering::Relaxed);
        }
        first_overflow.then(|| String::from_utf8_lossy(zone).into_owned())
    });
    if let Some(Some(zone)) = counted {
        crate::tap::suspended(|| {
            ngx_log_error!(
                NGX_LOG_WARN,
                log,
                "upstream_cause_zone \"{}\" is full: new series are counted under peer=\"other\" (this is said once)",
                zone
            );
        });
    }
}

/// The running configuration's zone (null, or what `add` gave): its name
/// and its table, held under the slab pool's mutex for as long as `f` runs.
pub fn with_table<R>(zone: *mut ngx_shm_zone_t, f: impl FnOnce(&[u8], &mut Shared) -> R) -> Option<R> {
    // SAFETY: null or the zone registered by `add`, initialised.
    let z = unsafe { zone.as_ref()? };
    // SAFETY: in a worker the zone stays mapped for the process's life.
    let pool = unsafe { SlabPool::from_shm_zone(z)? };
    let shared = NonNull::new(pool.as_ref().data.cast::<Shared>())?;
    let _locked = pool.lock();
    // SAFETY: the table lives in the zone; the slab mutex is held.
    let t = unsafe { &mut *shared.as_ptr() };
    // (another build of the crate, in the other module's .so, may have
    // made the table: its layout is this one's if its MAGIC is)
    if t.magic != MAGIC {
        return None;
    }
    Some(f(z.shm.name.as_bytes(), t))
}

/// What tells a peer apart in a worker's [`SuccessFilter`]: a configured
/// group's peer by where nginx keeps the group and the peer's name (fixed
/// for the configuration's life: no hashing on the success path); a peer
/// a variable named (`group` null), whose name lives in the request's
/// pool, by its text.
pub fn success_id(kind: Kind, group: *const c_void, name: &[u8]) -> u64 {
    if group.is_null() {
        return peer_hash(kind, b"", name);
    }
    (group as u64).rotate_left(17) ^ (name.as_ptr() as u64) ^ kind as u64
}

/// The zone's table, for what is read without its lock (its `failures`).
fn shared<'a>(zone: *mut ngx_shm_zone_t) -> Option<&'a Shared> {
    // SAFETY: null or the zone registered by `add`, initialised; in a
    // worker it stays mapped for the process's life.
    let z = unsafe { zone.as_ref()? };
    // SAFETY: as above.
    let pool = unsafe { SlabPool::from_shm_zone(z)? };
    // SAFETY: null or the table this module put there, whose MAGIC says
    // its layout; only its atomic field is read without the lock.
    let t = unsafe { pool.as_ref().data.cast::<Shared>().as_ref()? };
    (t.magic == MAGIC).then_some(t)
}

/// Whether the zone has recorded a failure (read without its lock).
pub fn has_failures(zone: *mut ngx_shm_zone_t) -> bool {
    shared(zone).is_some_and(|t| t.failures.load(Ordering::Relaxed) > 0)
}

/// Records a successful attempt of a peer in the live view (it ends the
/// peer's row of failures), taking the zone's lock only when `filter`
/// says it must: a failure was recorded in the zone since this worker last
/// recorded this peer's success, or a second has passed. Nothing is taken
/// while the zone has recorded no failure.
///
/// `id` tells the peer apart in the worker's filter ([`success_id`]); the
/// group's label (`label`, which takes a copy) is made only when the lock
/// is taken.
pub fn success(
    zone: *mut ngx_shm_zone_t,
    filter: &mut SuccessFilter,
    kind: Kind,
    id: u64,
    peer: &[u8],
    label: impl FnOnce() -> HostPort,
) {
    let Some(shared) = shared(zone) else { return };
    let failures = shared.failures.load(Ordering::Relaxed);
    if failures == 0 {
        return;
    }
    let ms = now_ms();
    if !filter.must_record(id, ms / 1000, failures) {
        return;
    }
    let upstream = label();
    with_table(zone, |_, t| t.table().live.success(kind, upstream.as_bytes(), peer, ms));
}

#[cfg(feature = "http")]
/// What the live view reads of the running configuration's zones (HTTP's
/// and stream's), each copied under its lock.
#[derive(Default)]
pub struct Snapshot {
    pub zones: Vec<upstream_cause_core::live::doc::ZoneDoc>,
    /// The latest of the zones' starts.
    pub started_ms: Option<u64>,
    pub series: Vec<(Series, Window)>,
    pub peers: Vec<PeerRecord>,
    /// Every zone's recent failures, newest first.
    pub recent: Vec<Recent>,
}

#[cfg(feature = "http")]
/// The live view's copy of the zones; `None` when there are none.
pub fn snapshot() -> Option<Snapshot> {
    use upstream_cause_core::live::doc::{rfc3339, ZoneDoc};
    // SAFETY: in a worker, ngx_cycle is its live cycle, and its list of
    // zones does not change while it runs.
    let cycle = unsafe { ngx::ffi::ngx_cycle.as_ref()? };
    let mut s = Snapshot::default();
    // SAFETY: as above.
    for zone in unsafe { list_items::<ngx_shm_zone_t>(&cycle.shared_memory) } {
        let Some(is_stream) = owner(cycle, zone.tag) else {
            continue;
        };
        let size = zone.shm.size as u64;
        with_table(ptr::from_ref(zone).cast_mut(), |name, t| {
            let table = t.table();
            s.series.extend(
                table
                    .slots
                    .iter()
                    .zip(table.windows.iter())
                    .filter(|(series, _)| series.family().is_some())
                    .map(|(series, w)| (*series, *w)),
            );
            s.peers
                .extend(table.live.peers.iter().filter(|p| p.kind().is_some()).copied());
            s.recent.extend(table.live.recent().copied());
            let h = *table.live.header;
            s.started_ms = Some(s.started_ms.map_or(h.started_ms, |m| m.max(h.started_ms)));
            s.zones.push(ZoneDoc {
                name: String::from_utf8_lossy(name).into_owned(),
                kind: if is_stream { Kind::Stream } else { Kind::Http },
                size,
                started: rfc3339(h.started_ms),
                peers_capacity: table.live.peers.len() as u64,
                peers_used: u64::from(h.peers_used),
                peers_dropped: u64::from(h.peers_dropped),
                recent_capacity: table.live.ring.len() as u64,
            });
        });
    }
    if s.zones.is_empty() {
        return None;
    }
    s.recent.sort_by_key(|r| core::cmp::Reverse(r.ms));
    Some(s)
}
