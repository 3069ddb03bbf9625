//! The per-request context: what was observed of each upstream attempt.
//!
//! It lives in the data of an `r->pool` cleanup, like realip's, so it
//! survives `error_page` and internal redirects (which zero `r->ctx`): when
//! `r->ctx` is empty we find it again by scanning the pool's cleanups for
//! our handler and our request. Subrequests share the pool, hence the
//! stored `r`.
//!
//! One owner at a time: the context sits in a `RefCell`, and every access
//! borrows it for no longer than the request reference it was found from.
//! Writers ([`get`], [`get_or_create`]) take it with `try_borrow_mut`, so a
//! call that re-enters while another holds it (a pool allocation that logs
//! runs the tap, which asks for the same context) gets nothing instead of a
//! second `&mut` to the same object.

use core::alloc::Layout;
use core::cell::{Cell, Ref, RefCell, RefMut, UnsafeCell};
use core::ffi::c_void;
use core::ops::Deref;
use core::ptr::{self, NonNull};

use ngx::ffi::{
    ngx_http_request_t, ngx_http_upstream_srv_conf_t, ngx_http_upstream_state_t, ngx_http_upstream_t, ngx_msec_t,
    ngx_pool_cleanup_add, ngx_pool_cleanup_t, ngx_uint_t,
};
use upstream_cause_core::observed::Heard;
use upstream_cause_core::{summarize, At, End, Observation, Observed, State, Summary};

/// An upstream group of the running configuration: the counters' label of
/// an attempt. Groups live as long as their cycle, which outlives its
/// requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upstream(NonNull<ngx_http_upstream_srv_conf_t>);

impl Upstream {
    /// The group `u` is on (none for an address a variable gave).
    pub fn of(u: &ngx_http_upstream_t) -> Option<Upstream> {
        NonNull::new(u.upstream).map(Upstream)
    }

    pub fn conf(&self) -> &ngx_http_upstream_srv_conf_t {
        // SAFETY: a group of the request's cycle (see the type).
        unsafe { self.0.as_ref() }
    }
}

/// What a request's failure signals made: its records, and the summary
/// last made from them (with what it was made from).
pub struct Records {
    observed: Observed<Upstream>,
    summary: Cell<Option<(Key, Summary<Upstream>)>>,
}

/// What a summary depends on besides the records: nginx's states (only
/// the last one still changes), the group and the response status.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    changes: u32,
    states: usize,
    last: Option<State>,
    current: Option<Upstream>,
    status: ngx_uint_t,
}

/// Created at the first failure signal of a request (a successful request
/// has none); what the variables, the header and the log line read is a
/// [`view`], which also covers requests without one.
pub struct Ctx {
    records: Option<NonNull<Records>>,
    /// The records came from the worker's cache (and go back to it).
    cached: bool,
}

/// What our pool cleanup's data holds: the owner (read to find the context
/// of a request after an internal redirect, also while the context is
/// borrowed), and the context.
struct Slot {
    r: *const ngx_http_request_t,
    cell: RefCell<Ctx>,
}

/// Records a worker keeps for reuse: when a failed request's pool is
/// destroyed its records return here, so the next failure takes them
/// instead of 1.3 KB of its own pool (which, late in a request, usually
/// means a new pool block: a malloc and a free per failed request). At
/// most `CACHED` records per process are made this way, by the process's
/// allocator, and never freed: the cache is a static, and so is what it
/// holds (not the cycle pool, which a new cycle frees: in single-process
/// mode a reload would leave the cache pointing into freed memory). Beyond
/// that (more failing requests at once) a request uses its own pool.
const CACHED: usize = 32;

struct Cache {
    free: UnsafeCell<[*mut Records; CACHED]>,
    nfree: Cell<usize>,
    made: Cell<usize>,
}

// SAFETY: used only by the worker's one thread (requests, pool cleanups).
unsafe impl Sync for Cache {}

static CACHE: Cache = Cache {
    free: UnsafeCell::new([ptr::null_mut(); CACHED]),
    nfree: Cell::new(0),
    made: Cell::new(0),
};

impl Cache {
    /// Records to fill, or null when the cache has none and may make none.
    fn take(&self) -> *mut Records {
        let n = self.nfree.get();
        if n > 0 {
            self.nfree.set(n - 1);
            // SAFETY: see the Sync impl; n - 1 < CACHED.
            return unsafe { (*self.free.get())[n - 1] };
        }
        if self.made.get() == CACHED {
            return ptr::null_mut();
        }
        // SAFETY: Records has a non-zero size; null on failure (no abort).
        let p = unsafe { std::alloc::alloc(Layout::new::<Records>()) }.cast::<Records>();
        if !p.is_null() {
            self.made.set(self.made.get() + 1);
        }
        p
    }

    /// Takes back records that `take` gave.
    fn give(&self, p: *mut Records) {
        let n = self.nfree.get();
        // Always true: no more than `made <= CACHED` records are out.
        if n < CACHED {
            // SAFETY: see the Sync impl; n < CACHED.
            unsafe { (*self.free.get())[n] = p };
            self.nfree.set(n + 1);
        }
    }
}

/// How many requests of the worker have a context now (made, their pool
/// not yet destroyed): while none has, a balancer's `free` after a
/// success has nothing to look up.
struct Live(Cell<usize>);

// SAFETY: used only by the worker's one thread (requests, pool cleanups).
unsafe impl Sync for Live {}

static LIVE: Live = Live(Cell::new(0));

/// Whether any request of the worker has a context.
#[inline]
pub fn any() -> bool {
    LIVE.0.get() != 0
}

/// Our pool cleanup: returns cached records to the worker's cache; its
/// address marks the cleanup whose data is a [`Slot`].
unsafe extern "C" fn cleanup(data: *mut c_void) {
    // SAFETY: nginx calls this with the data of our cleanup, a Slot, while
    // the pool (and the records, if from the request pool) still exist;
    // nothing reads the context after its pool is being destroyed.
    let Some(slot) = (unsafe { data.cast::<Slot>().as_ref() }) else {
        return;
    };
    LIVE.0.set(LIVE.0.get().saturating_sub(1));
    let Ok(mut ctx) = slot.cell.try_borrow_mut() else {
        return;
    };
    if ctx.cached {
        if let Some(p) = ctx.records.take() {
            CACHE.give(p.as_ptr());
        }
    }
}

/// What the variables, the header and the log line read: the request's
/// context, borrowed for as long as the request is, or, for a request
/// without one, an empty context (nginx's own upstream states alone).
pub enum View<'r> {
    Held(Ref<'r, Ctx>),
    Bare(Ctx),
}

impl Deref for View<'_> {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        match self {
            View::Held(c) => c,
            View::Bare(c) => c,
        }
    }
}

/// What there is to read about the request.
pub fn view(r: &ngx_http_request_t) -> View<'_> {
    match cell(r).and_then(|c| c.try_borrow().ok()) {
        Some(c) => View::Held(c),
        None => View::Bare(Ctx {
            records: None,
            cached: false,
        }),
    }
}

/// The request's context, for as long as `r` is borrowed; `None` when it
/// has none, or when another caller holds it (a re-entrant call).
pub fn get(r: &ngx_http_request_t) -> Option<RefMut<'_, Ctx>> {
    cell(r)?.try_borrow_mut().ok()
}

/// Finds the request's context, also after an internal redirect.
fn cell(req: &ngx_http_request_t) -> Option<&RefCell<Ctx>> {
    let r = ptr::from_ref(req);
    // SAFETY: `r->ctx` has one slot per HTTP module; ours holds our Slot
    // or null.
    let fast = unsafe { *req.ctx.add(super::ctx_index()) }.cast::<Slot>();
    // SAFETY: a non-null slot was set by us to the Slot in the request
    // pool, which outlives the request reference.
    if let Some(slot) = unsafe { fast.as_ref() } {
        return Some(&slot.cell);
    }
    // nginx zeroes `r->ctx` only in internal redirects and named locations
    // (which set `internal`, as every subrequest has it) and in
    // ngx_http_filter_finalize_request (`filter_finalize`): otherwise an
    // empty slot means there is no context.
    if req.internal() == 0 && req.filter_finalize() == 0 {
        return None;
    }
    // SAFETY: the pool and its cleanup chain are valid for a live request.
    let mut cln = unsafe { (*req.pool).cleanup };
    // SAFETY: each link is null or a live cleanup of the request's pool.
    while let Some(c) = unsafe { cln.as_ref() } {
        if c.handler.map(|h| h as usize) == Some(cleanup as *const () as usize) {
            // SAFETY: our handler's data is always a Slot, in the request
            // pool.
            let slot = unsafe { &*c.data.cast::<Slot>() };
            if slot.r == r {
                // SAFETY: caching the pointer back into our r->ctx slot.
                unsafe { *req.ctx.add(super::ctx_index()) = c.data };
                return Some(&slot.cell);
            }
        }
        cln = c.next;
    }
    None
}

/// Finds or creates the request's context; `None` when another caller
/// holds it (a re-entrant call) or on allocation failure.
pub fn get_or_create(req: &ngx_http_request_t) -> Option<RefMut<'_, Ctx>> {
    if let Some(cell) = cell(req) {
        return cell.try_borrow_mut().ok();
    }
    // The pool may log if it fails: the tap must not hear it half made.
    let cln: *mut ngx_pool_cleanup_t = crate::tap::suspended(|| {
        // SAFETY: the request's live pool.
        unsafe { ngx_pool_cleanup_add(req.pool, core::mem::size_of::<Slot>()) }
    });
    // SAFETY: null, or a cleanup nginx just added to the request pool.
    let cln = unsafe { cln.as_mut()? };
    let data = cln.data.cast::<Slot>();
    // SAFETY: the cleanup's data: fresh pool memory of the right size,
    // aligned (NGX_ALIGNMENT, asserted below); the pool outlives every use
    // (the cleanup runs when it is destroyed).
    unsafe {
        ptr::write(
            data,
            Slot {
                r: req,
                cell: RefCell::new(Ctx {
                    records: None,
                    cached: false,
                }),
            },
        );
    }
    cln.handler = Some(cleanup);
    LIVE.0.set(LIVE.0.get() + 1);
    // SAFETY: our slot of the live request's ctx array.
    unsafe { *req.ctx.add(super::ctx_index()) = cln.data };
    // SAFETY: initialised above; lives in the request pool, as long as the
    // request reference.
    unsafe { &*data }.cell.try_borrow_mut().ok()
}

impl Ctx {
    fn records(&self) -> Option<&Records> {
        // SAFETY: our initialised records (cache or request pool), alive
        // while the context is.
        self.records.map(|p| unsafe { &*p.as_ptr() })
    }

    /// The records, taken on first use from the worker's cache or else
    /// from the request pool.
    fn records_mut(&mut self, r: &ngx_http_request_t) -> Option<&mut Records> {
        if self.records.is_none() {
            let mut p = CACHE.take();
            self.cached = !p.is_null();
            if p.is_null() {
                // SAFETY: the live request's pool.
                let pool = unsafe { ngx::core::Pool::from_ngx_pool(r.pool) };
                // The pool may log if it fails: not to be heard by the tap.
                p = crate::tap::suspended(|| pool.alloc(core::mem::size_of::<Records>())).cast::<Records>();
            }
            let p = NonNull::new(p)?;
            // SAFETY: suitably aligned memory of the right size, ours alone
            // (fresh, or given back by a finished request).
            unsafe {
                ptr::write(
                    p.as_ptr(),
                    Records {
                        observed: Observed::new(),
                        summary: Cell::new(None),
                    },
                )
            };
            self.records = Some(p);
        }
        // SAFETY: as in `records`; the context is borrowed mutably.
        self.records.map(|p| unsafe { &mut *p.as_ptr() })
    }

    /// What was observed, if anything was.
    pub fn observed(&self) -> Option<&Observed<Upstream>> {
        self.records().map(|r| &r.observed)
    }

    /// Whether anything was observed of attempt `idx`.
    pub fn watched(&self, idx: usize) -> bool {
        self.observed().is_some_and(|o| o.watched(idx).is_some())
    }

    /// An upstream error line nginx logged while on `at`.
    pub fn hear(&mut self, r: &ngx_http_request_t, at: At, heard: Heard<'_>) {
        if let Some(recs) = self.records_mut(r) {
            recs.observed.hear(at, heard);
        }
    }

    /// How attempt `idx` ended.
    pub fn end(&mut self, r: &ngx_http_request_t, idx: usize, end: End, obs: Observation, us: Option<Upstream>) {
        if let Some(recs) = self.records_mut(r) {
            recs.observed.end(idx, end, obs, us);
        }
    }

    /// What the request reports, worked out once for what is known now.
    pub fn summary(&self, r: &ngx_http_request_t) -> Summary<Upstream> {
        let states = states(r);
        // SAFETY: the request's upstream is null or live.
        let current = unsafe { r.upstream.as_ref() }.and_then(Upstream::of);
        let key = Key {
            changes: self.observed().map_or(0, Observed::changes),
            states: states.len(),
            last: states.last().map(state_of),
            current,
            status: r.headers_out.status,
        };
        let cache = self.records().map(|recs| &recs.summary);
        if let Some((k, s)) = cache.and_then(Cell::get) {
            if k == key {
                return s;
            }
        }
        let status = u16::try_from(key.status).unwrap_or(0);
        // SAFETY: the live request's connection, and its log.
        let log = unsafe { (*r.connection).log };
        let s = crate::trace::with_log(log, || {
            summarize(self.observed(), states.iter().map(state_of), current, status)
        });
        if let Some(cache) = cache {
            cache.set(Some((key, s)));
        }
        s
    }
}

/// True when the request has nothing to report: no upstream answered a
/// 5xx and no failure was observed. The success path's one check.
#[inline]
pub fn quiet(r: &ngx_http_request_t) -> bool {
    states(r).iter().all(|s| s.status < 500)
        && cell(r)
            .and_then(|c| c.try_borrow().ok())
            .is_none_or(|c| c.records.is_none())
}

/// The nginx upstream states of the request (aligned with `$upstream_addr`).
pub fn states(r: &ngx_http_request_t) -> &[ngx_http_upstream_state_t] {
    // SAFETY: upstream_states is null or a valid array of states, as long
    // as the request.
    unsafe {
        r.upstream_states
            .as_ref()
            .map_or(&[], |a| a.as_slice::<ngx_http_upstream_state_t>())
    }
}

/// Whether a whole response header arrived on the attempt.
pub fn header_received(st: &ngx_http_upstream_state_t) -> bool {
    st.header_time != ngx_msec_t::MAX
}

/// An nginx state as the core reads it.
fn state_of(st: &ngx_http_upstream_state_t) -> State {
    State {
        status: u16::try_from(st.status).unwrap_or(0),
        header_received: header_received(st),
        has_peer: !st.peer.is_null(),
    }
}

/// The `peer` label of an attempt: its address as nginx names it.
pub fn peer_label(st: Option<&ngx_http_upstream_state_t>) -> &[u8] {
    // SAFETY: a state's peer is null or a string valid for the request.
    st.and_then(|s| unsafe { s.peer.as_ref() })
        .map_or(&b"-"[..], |p| p.as_bytes())
}

/// The index of `state` in the request's `upstream_states`.
pub fn state_index(r: &ngx_http_request_t, state: *const ngx_http_upstream_state_t) -> Option<usize> {
    let all = states(r).as_ptr_range();
    let size = core::mem::size_of::<ngx_http_upstream_state_t>();
    all.contains(&state)
        .then(|| (state as usize - all.start as usize) / size)
}

/// Where a line nginx logs now belongs: the attempt nginx is on (where
/// `u->state` points), or before any.
pub fn current_attempt(r: &ngx_http_request_t) -> At {
    // SAFETY: the request's upstream is null or live.
    let state = unsafe { r.upstream.as_ref() }.map(|u| u.state);
    match state.and_then(|s| state_index(r, s)) {
        Some(idx) => At::Attempt(idx),
        None => At::BeforeAny,
    }
}

const _: () = assert!(core::mem::align_of::<Records>() <= ngx::ffi::NGX_ALIGNMENT);
const _: () = assert!(core::mem::align_of::<Slot>() <= ngx::ffi::NGX_ALIGNMENT);
