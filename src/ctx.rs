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
use core::ptr;

use ngx::ffi::{
    ngx_http_request_t, ngx_http_upstream_srv_conf_t, ngx_http_upstream_state_t, ngx_pool_cleanup_add,
    ngx_pool_cleanup_t,
};

use upstream_cause_core::render::Entry;
use upstream_cause_core::text::{Message, MessageKind};
use upstream_cause_core::{classify, Cause, End, Observation};

/// Attempts recorded per request; later ones render from nginx's own state
/// only (`-` or `via_upstream`).
pub const MAX_ATTEMPTS: usize = 16;
/// Bytes of nginx error text kept for the latest failed attempt.
pub const DETAIL_MAX: usize = 480;
/// The "attempt" index of a failure before any attempt.
pub const BEFORE_ANY: usize = usize::MAX;

#[derive(Clone, Copy)]
pub struct Attempt {
    pub recorded: bool,
    pub obs: Observation,
    /// The upstream the attempt was made to (for the counters' label).
    pub upstream: *const ngx_http_upstream_srv_conf_t,
}

impl Default for Attempt {
    fn default() -> Self {
        Attempt {
            recorded: false,
            obs: Observation::default(),
            upstream: ptr::null(),
        }
    }
}

/// Lazily allocated when the first failure signal of the request arrives,
/// so a successful request allocates none of it.
pub struct Records {
    pub attempts: [Attempt; MAX_ATTEMPTS],
    pub detail: [u8; DETAIL_MAX],
    pub detail_len: usize,
    /// The attempt `detail` belongs to ([`BEFORE_ANY`] for `pre`).
    pub detail_idx: usize,
    /// A failure before any attempt (the resolver), when there is no
    /// upstream state to attribute it to.
    pub pre: Option<Message>,
    /// Each attempt's cause, once classified, keyed by the nginx state it
    /// was computed from (status, header received): the variables, the
    /// header and the log line all ask, classification runs once. Cleared
    /// when a new observation arrives.
    memo: [Cell<Option<Memo>>; MAX_ATTEMPTS],
}

type Memo = (u16, bool, Option<Cause>);

/// Appended to the detail of a failure on a connection from the keepalive
/// cache: its usual fix differs (the upstream's idle timeout is shorter
/// than nginx's reuse of the connection).
pub const REUSED_MARK: &[u8] = b" (reused keepalive connection)";

impl Records {
    /// Marks the detail as a failure on a reused connection, if it is
    /// attempt `idx`'s and that attempt was on one.
    pub fn mark_reused(&mut self, idx: usize) {
        let reused = self.attempts.get(idx).is_some_and(|a| a.recorded && a.obs.reused);
        let len = self.detail_len;
        if !reused || self.detail_idx != idx || len == 0 || self.detail[..len].ends_with(REUSED_MARK) {
            return;
        }
        let at = len.min(DETAIL_MAX - REUSED_MARK.len());
        self.detail[at..at + REUSED_MARK.len()].copy_from_slice(REUSED_MARK);
        self.detail_len = at + REUSED_MARK.len();
    }

    /// Forgets attempt `idx`'s cause: something new was observed.
    pub fn observed(&self, idx: usize) {
        if let Some(m) = self.memo.get(idx) {
            m.set(None);
        }
    }
}

/// Bytes of request pool the context takes (with its pool cleanup), once a
/// failure signal arrives. (Read only by the assertions in lib.rs, which
/// rustc 1.85's dead-code lint does not count as a use.)
#[allow(dead_code)]
pub const CTX_BYTES: usize = core::mem::size_of::<Slot>() + core::mem::size_of::<ngx_pool_cleanup_t>();
/// Bytes taken once an attempt fails (the records).
#[allow(dead_code)]
pub const RECORDS_BYTES: usize = core::mem::size_of::<Records>();

/// Created at the first failure signal of a request (a successful request
/// has none); what the variables, the header and the log line read is a
/// [`view`], which also covers requests without one.
pub struct Ctx {
    pub r: *mut ngx_http_request_t,
    pub records: *mut Records,
    /// The records came from the worker's cache (and go back to it).
    cached: bool,
}

/// What our pool cleanup's data holds: the owner (read to find the context
/// of a request after an internal redirect, also while the context is
/// borrowed), and the context.
struct Slot {
    r: *mut ngx_http_request_t,
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

/// Our pool cleanup: returns cached records to the worker's cache; its
/// address marks the cleanup whose data is a [`Slot`].
unsafe extern "C" fn cleanup(data: *mut c_void) {
    // SAFETY: nginx calls this with the data of our cleanup, a Slot, while
    // the pool (and the records, if from the request pool) still exist;
    // nothing reads the context after its pool is being destroyed.
    let Some(slot) = (unsafe { data.cast::<Slot>().as_ref() }) else {
        return;
    };
    let Ok(mut ctx) = slot.cell.try_borrow_mut() else {
        return;
    };
    if ctx.cached && !ctx.records.is_null() {
        CACHE.give(ctx.records);
        ctx.records = ptr::null_mut();
    }
}

/// What the variables, the header and the log line read: the request's
/// context, borrowed for as long as the request is, or, for a request
/// without one, a bare context over nginx's own upstream states.
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

/// What there is to read about the request: its context if it has one,
/// else nginx's own upstream states alone.
pub fn view(r: &ngx_http_request_t) -> View<'_> {
    match cell(r).and_then(|c| c.try_borrow().ok()) {
        Some(c) => View::Held(c),
        None => View::Bare(Ctx {
            r: ptr::from_ref(r).cast_mut(),
            records: ptr::null_mut(),
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
    let r = ptr::from_ref(req).cast_mut();
    // SAFETY: `r->ctx` has one slot per HTTP module; ours holds our Slot
    // or null.
    let fast = unsafe { *req.ctx.add(crate::ctx_index()) }.cast::<Slot>();
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
                unsafe { *req.ctx.add(crate::ctx_index()) = c.data };
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
    let r = ptr::from_ref(req).cast_mut();
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
                r,
                cell: RefCell::new(Ctx {
                    r,
                    records: ptr::null_mut(),
                    cached: false,
                }),
            },
        );
    }
    cln.handler = Some(cleanup);
    // SAFETY: our slot of the live request's ctx array.
    unsafe { *req.ctx.add(crate::ctx_index()) = cln.data };
    // SAFETY: initialised above; lives in the request pool, as long as the
    // request reference.
    unsafe { &*data }.cell.try_borrow_mut().ok()
}

impl Ctx {
    /// The records, taken on first use from the worker's cache or else
    /// from the request pool.
    pub fn records(&mut self) -> Option<&mut Records> {
        if self.records.is_null() {
            let mut p = CACHE.take();
            self.cached = !p.is_null();
            if p.is_null() {
                // SAFETY: r is the live request owning this Ctx.
                let pool = unsafe { ngx::core::Pool::from_ngx_pool((*self.r).pool) };
                // The pool may log if it fails: not to be heard by the tap.
                p = crate::tap::suspended(|| pool.alloc(core::mem::size_of::<Records>())).cast::<Records>();
            }
            if p.is_null() {
                return None;
            }
            // SAFETY: suitably aligned pool memory of the right size, ours
            // alone (fresh, or given back by a finished request).
            unsafe {
                ptr::write(
                    p,
                    Records {
                        attempts: [Attempt::default(); MAX_ATTEMPTS],
                        detail: [0; DETAIL_MAX],
                        detail_len: 0,
                        detail_idx: 0,
                        pre: None,
                        memo: [const { Cell::new(None) }; MAX_ATTEMPTS],
                    },
                )
            };
            self.records = p;
        }
        // SAFETY: allocated and initialised above, in the request pool.
        unsafe { self.records.as_mut() }
    }

    pub fn attempt_mut(&mut self, idx: usize) -> Option<&mut Attempt> {
        self.records()?.attempts.get_mut(idx)
    }

    pub fn recorded(&self, idx: usize) -> Option<&Attempt> {
        // SAFETY: null or our zero-initialised records in the request pool.
        let recs = unsafe { self.records.as_ref()? };
        recs.attempts.get(idx).filter(|a| a.recorded)
    }

    /// The parsed message of attempt `idx` (or of the failure before any
    /// attempt), which refines the hint.
    pub fn message_of(&self, idx: usize) -> Option<Message> {
        if idx == BEFORE_ANY {
            // SAFETY: null or our records.
            return unsafe { self.records.as_ref()? }.pre;
        }
        self.recorded(idx)?.obs.message
    }

    pub fn detail_of(&self, idx: usize) -> &[u8] {
        // SAFETY: null or our records.
        match unsafe { self.records.as_ref() } {
            Some(recs) if recs.detail_idx == idx => &recs.detail[..recs.detail_len],
            _ => &[],
        }
    }

    /// The nginx upstream states of the request (aligned with `$upstream_addr`).
    pub fn states(&self) -> &[ngx_http_upstream_state_t] {
        // SAFETY: r is live; upstream_states is null or a valid array of states.
        unsafe {
            match (*self.r).upstream_states.as_ref() {
                Some(a) => a.as_slice::<ngx_http_upstream_state_t>(),
                None => &[],
            }
        }
    }

    /// The cause of attempt `idx`, completing the recorded observation with
    /// what nginx knows by now (status, header time).
    pub fn cause_of(&self, idx: usize) -> Option<Cause> {
        let st = self.states().get(idx)?;
        let header_received = st.header_time != ngx::ffi::ngx_msec_t::MAX;
        let status = u16::try_from(st.status).unwrap_or(0);
        match self.recorded(idx) {
            Some(a) => {
                // SAFETY: `recorded` found an attempt, so the records exist.
                let memo = unsafe { &(*self.records).memo[idx] };
                if let Some((s, h, cause)) = memo.get() {
                    if (s, h) == (status, header_received) {
                        return cause;
                    }
                }
                // An attempt seen only through its log line (no balancer
                // wrapper: `proxy_pass http://$var` to an address) ends
                // when nginx stores the status it failed with.
                let end = match a.obs.end {
                    End::Open if status >= 500 && !header_received => End::Failed,
                    end => end,
                };
                let o = Observation {
                    end,
                    header_received: a.obs.header_received || header_received,
                    status,
                    ..a.obs
                };
                // SAFETY: r is live, and so is its connection's log.
                let log = unsafe { (*(*self.r).connection).log };
                let cause = crate::trace::with_log(log, || classify(&o));
                memo.set(Some((status, header_received, cause)));
                cause
            }
            None if header_received && status >= 500 => Some(Cause::ViaUpstream),
            None => None,
        }
    }

    /// True when there is nothing to report: no failure was observed and no
    /// upstream answered a 5xx. The success path's one check.
    pub fn quiet(&self) -> bool {
        self.records.is_null() && self.states().iter().all(|s| s.status < 500)
    }

    /// The failure before any attempt, if that is all there is.
    fn before_any(&self) -> Option<Cause> {
        if !self.states().is_empty() {
            return None;
        }
        // SAFETY: null or our records.
        let pre = unsafe { self.records.as_ref()? }.pre?;
        match pre.kind {
            MessageKind::ResolveFailed => Some(Cause::ResolveFailed),
            MessageKind::NoLiveUpstreams => Some(Cause::NoLiveUpstreams),
            _ => None,
        }
    }

    /// Entries for `$upstream_cause_list`, one per upstream state (or the
    /// one failure before any attempt).
    pub fn entries<'a>(&self, buf: &'a mut [Entry; 64]) -> &'a [Entry] {
        if let Some(cause) = self.before_any() {
            buf[0] = Entry::Attempt(Some(cause));
            return &buf[..1];
        }
        let states = self.states();
        // Failed attempts and nothing recorded: nobody watched them (they
        // were made where `upstream_cause` is off): nothing to list.
        if self.records.is_null()
            && states
                .iter()
                .any(|s| s.status >= 500 && s.header_time == ngx::ffi::ngx_msec_t::MAX)
        {
            return &buf[..0];
        }
        let n = states.len().min(buf.len());
        for (i, st) in states.iter().take(n).enumerate() {
            buf[i] = if st.peer.is_null() && self.recorded(i).is_none() {
                Entry::Separator
            } else {
                Entry::Attempt(self.cause_of(i))
            };
        }
        &buf[..n]
    }

    /// The final cause: the last attempt's, if it made the response.
    pub fn final_cause(&self) -> Option<(Cause, usize)> {
        if let Some(cause) = self.before_any() {
            return Some((cause, BEFORE_ANY));
        }
        let n = self.states().len();
        let last = n.checked_sub(1)?;
        // SAFETY: r is live.
        let status = unsafe { (*self.r).headers_out.status };
        let cause = upstream_cause_core::final_cause(self.cause_of(last), u16::try_from(status).unwrap_or(0))?;
        Some((cause, last))
    }

    /// Index in `r->upstream_states` of the attempt nginx is on (or last
    /// was on): where `u->state` points.
    pub fn current_index(&self) -> Option<usize> {
        // SAFETY: r is live; its upstream is null or live.
        let u = unsafe { (*self.r).upstream.as_ref()? };
        // SAFETY: r is live.
        state_index(unsafe { &*self.r }, u.state)
    }
}

/// The index of `state` in the request's `upstream_states`.
pub fn state_index(r: &ngx_http_request_t, state: *mut ngx_http_upstream_state_t) -> Option<usize> {
    // SAFETY: upstream_states is null or a valid array.
    let arr = unsafe { r.upstream_states.as_ref()? };
    let base = arr.elts as usize;
    let at = state as usize;
    let size = core::mem::size_of::<ngx_http_upstream_state_t>();
    (at >= base && at < base + arr.nelts * size).then(|| (at - base) / size)
}

const _: () = assert!(core::mem::align_of::<Records>() <= ngx::ffi::NGX_ALIGNMENT);
const _: () = assert!(core::mem::align_of::<Slot>() <= ngx::ffi::NGX_ALIGNMENT);

/// Marks how the attempt ended, and when new it starts the record.
pub fn record_end(
    ctx: &mut Ctx,
    idx: usize,
    end: End,
    obs: Observation,
    upstream: *const ngx_http_upstream_srv_conf_t,
) {
    if let Some(a) = ctx.attempt_mut(idx) {
        let message = if a.recorded { a.obs.message } else { None };
        a.obs = Observation { end, message, ..obs };
        a.recorded = true;
        a.upstream = upstream;
    }
    if let Some(recs) = ctx.records() {
        recs.observed(idx);
        recs.mark_reused(idx);
    }
}
