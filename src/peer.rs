//! Wrapping every upstream's balancer to observe each attempt.
//!
//! Like the keepalive module: in postconfiguration (after every
//! `init_upstream` ran) each `uscf->peer.init` is replaced by ours; ours
//! calls the original, then puts our `get`/`free` in front of the inner
//! balancer's. Being the outermost wrapper composes with keepalive, hash,
//! least_conn and the rest.
//!
//! Nothing is allocated per request: `u->peer.data` stays the inner
//! balancer's (so `notify` and `set_session`/`save_session` need no
//! wrapping), and which inner `get`/`free` to call is said by the wrapper
//! itself (one instantiation per distinct pair, see [`crate::slots`]). The
//! request is found from the peer connection: `pc` is `&u->peer`, and
//! `pc->log` is the request's connection log, whose context names the
//! request nginx is working on.

use core::ffi::c_void;
use core::ptr;

use ngx::ffi::{
    ngx_conf_t, ngx_event_free_peer_pt, ngx_event_get_peer_pt, ngx_http_log_ctx_t, ngx_http_request_t,
    ngx_http_upstream_init_peer_pt, ngx_http_upstream_rr_peer_t, ngx_http_upstream_rr_peers_t,
    ngx_http_upstream_srv_conf_t, ngx_http_upstream_t, ngx_int_t, ngx_msec_t, ngx_peer_connection_t, ngx_uint_t,
    NGX_BUSY, NGX_ERROR, NGX_LOG_WARN, NGX_OK, NGX_PEER_FAILED,
};
use ngx::http::{HttpModuleMainConf, NgxHttpUpstreamModule};
use upstream_cause_core::peers::Peer;
use upstream_cause_core::{End, Observation};

use crate::ctx;
use crate::slots::{same_fn, wrap, wrappers, Slots};

type InitFn = unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_http_upstream_srv_conf_t) -> ngx_int_t;
type GetFn = unsafe extern "C" fn(*mut ngx_peer_connection_t, *mut c_void) -> ngx_int_t;
type FreeFn = unsafe extern "C" fn(*mut ngx_peer_connection_t, *mut c_void, ngx_uint_t);

/// The original `peer.init` functions.
static INITS: Slots<ngx_http_upstream_init_peer_pt> = Slots::new();
static INIT_WRAPPERS: [InitFn; crate::slots::N] = wrappers!(init_peer);

/// The inner balancers' `get` and `free`, in pairs.
static PEERS: Slots<(ngx_event_get_peer_pt, ngx_event_free_peer_pt)> = Slots::new();
static GET_WRAPPERS: [GetFn; crate::slots::N] = wrappers!(get_peer);
static FREE_WRAPPERS: [FreeFn; crate::slots::N] = wrappers!(free_peer);

fn init_addr(f: InitFn) -> usize {
    f as usize
}

/// Replaces `peer.init` of every upstream (explicit `upstream {}` blocks and
/// the implicit ones of `proxy_pass http://addr`).
///
/// # Safety
/// Called from postconfiguration with nginx's valid `cf`.
pub unsafe fn wrap_all(cf: *mut ngx_conf_t) {
    // SAFETY: nginx's cf during the http block.
    let Some(umcf) = NgxHttpUpstreamModule::main_conf(unsafe { &*cf }) else {
        return;
    };
    // SAFETY: `upstreams` is an array of uscf pointers.
    let upstreams = unsafe { umcf.upstreams.as_slice::<*mut ngx_http_upstream_srv_conf_t>() };
    for &uscf in upstreams {
        // SAFETY: valid uscf pointers owned by the upstream module.
        let Some(us) = (unsafe { uscf.as_mut() }) else { continue };
        match wrap(&INITS, us.peer.init, &INIT_WRAPPERS, init_addr) {
            Ok(Some(w)) => us.peer.init = Some(w),
            Ok(None) => {}
            Err(()) => {
                ngx::ngx_conf_log_error!(
                    NGX_LOG_WARN,
                    cf,
                    "upstream_cause: too many kinds of balancers, \"{}\" is not observed",
                    String::from_utf8_lossy(us.host.as_bytes())
                );
            }
        }
    }
}

unsafe extern "C" fn init_peer<const I: usize>(
    r: *mut ngx_http_request_t,
    us: *mut ngx_http_upstream_srv_conf_t,
) -> ngx_int_t {
    let Some(orig) = INITS.get(I).flatten() else {
        return NGX_ERROR as ngx_int_t;
    };
    // SAFETY: the original peer.init, called as nginx would have.
    let rc = unsafe { orig(r, us) };
    if rc == NGX_OK as ngx_int_t {
        crate::guard((), || {
            if crate::enabled_for(r) {
                // SAFETY: r is live and its upstream was just initialised.
                unsafe { install(r) };
            }
        });
    }
    rc
}

/// Puts our get/free in front of the ones the original init set.
///
/// # Safety
/// `r` is a live request whose `u->peer` the original init just set up.
unsafe fn install(r: *mut ngx_http_request_t) {
    // SAFETY: per the contract.
    let Some(u) = (unsafe { (*r).upstream.as_mut() }) else {
        return;
    };
    let p = &mut u.peer;
    let same = |a: &(ngx_event_get_peer_pt, ngx_event_free_peer_pt), b: &(_, _)| {
        same_fn(a.0, b.0, |f: GetFn| f as usize) && same_fn(a.1, b.1, |f: FreeFn| f as usize)
    };
    if p.get.is_none() || p.free.is_none() {
        return;
    }
    // No slot left: nginx works exactly as without us for this balancer.
    if let Some(i) = PEERS.find_or_add((p.get, p.free), same) {
        p.get = Some(GET_WRAPPERS[i]);
        p.free = Some(FREE_WRAPPERS[i]);
    }
}

/// The request and upstream `pc` belongs to, borrowed no longer than `pc`
/// (nginx's call).
///
/// # Safety
/// `pc` is a live peer connection handed to us by nginx.
unsafe fn request_of(pc: &ngx_peer_connection_t) -> Option<(&ngx_http_request_t, *mut ngx_http_upstream_t)> {
    // Computed, not dereferenced, until a request says it is its upstream.
    let u = ptr::from_ref(pc)
        .cast::<u8>()
        .wrapping_sub(core::mem::offset_of!(ngx_http_upstream_t, peer))
        .cast::<ngx_http_upstream_t>()
        .cast_mut();
    // SAFETY: pc->log is the request's connection log (set by nginx's
    // upstream init), whose data is the HTTP log context.
    let lctx = unsafe { pc.log.as_ref()?.data.cast::<ngx_http_log_ctx_t>().as_ref()? };
    if lctx.request.is_null() {
        return None;
    }
    for r in [lctx.current_request, lctx.request] {
        // SAFETY: with `request` set, both are live requests of the
        // connection, and stay so for the whole of nginx's call.
        if let Some(req) = unsafe { r.as_ref() } {
            if req.upstream == u {
                return Some((req, u));
            }
        }
    }
    None
}

unsafe extern "C" fn get_peer<const I: usize>(pc: *mut ngx_peer_connection_t, data: *mut c_void) -> ngx_int_t {
    let Some((Some(inner), _)) = PEERS.get(I) else {
        return NGX_ERROR as ngx_int_t;
    };
    // SAFETY: the inner balancer's get with its own data.
    let rc = unsafe { inner(pc, data) };
    // The usual case: a peer was chosen and the tap is on the log already
    // (the location's content handler armed it).
    // SAFETY: nginx calls get with u->peer, whose log is the request's.
    if rc != NGX_BUSY as ngx_int_t && unsafe { (*pc).log.as_ref() }.is_none_or(|l| crate::tap::is_ours(l.writer)) {
        return rc;
    }
    crate::guard((), || {
        // SAFETY: nginx calls get with u->peer, live for the call.
        let Some(pc) = (unsafe { pc.as_ref() }) else { return };
        // SAFETY: as above.
        let Some((r, u)) = (unsafe { request_of(pc) }) else {
            return;
        };
        // SAFETY: the request's live connection log.
        unsafe { crate::tap::arm((*r.connection).log) };
        if rc == NGX_BUSY as ngx_int_t {
            // SAFETY: u is r's live upstream.
            let (state, us) = unsafe { ((*u).state, (*u).upstream) };
            // SAFETY: the request's upstream group, live for the cycle.
            let saturated = unsafe { saturated(us) };
            let found = ctx::state_index(r, state).and_then(|idx| Some((idx, ctx::get_or_create(r)?)));
            if let Some((idx, mut ctx)) = found {
                let obs = Observation {
                    saturated,
                    ..Default::default()
                };
                ctx::record_end(&mut ctx, idx, End::NoLivePeer, obs, us);
            }
        }
    });
    rc
}

const UNSET_MSEC: ngx_msec_t = ngx_msec_t::MAX;

/// What the attempt looks like right now, before the inner free runs.
fn snapshot(r: &ngx_http_request_t, u: &ngx_http_upstream_t, pc: &ngx_peer_connection_t) -> Observation {
    let mut o = Observation {
        reused: pc.cached() != 0,
        ..Default::default()
    };
    // SAFETY: pc.connection is null or the live peer connection.
    if let Some(c) = unsafe { pc.connection.as_ref() } {
        o.connection = true;
        // SAFETY: a live connection's events are valid.
        if let (Some(rd), Some(wr)) = unsafe { (c.read.as_ref(), c.write.as_ref()) } {
            o.read_eof = rd.eof() != 0;
            o.read_error = rd.error() != 0;
            o.read_timedout = rd.timedout() != 0;
            o.write_error = wr.error() != 0;
            o.write_timedout = wr.timedout() != 0;
        }
        // SAFETY: c.ssl is null or the live SSL connection.
        if let Some(ssl) = unsafe { c.ssl.as_ref() } {
            o.ssl = true;
            o.ssl_handshaked = ssl.handshaked() != 0;
        }
    }
    // SAFETY: u.state is the attempt's live state.
    if let Some(st) = unsafe { u.state.as_ref() } {
        o.connected = st.connect_time != UNSET_MSEC;
        o.header_received = st.header_time != UNSET_MSEC;
    }
    o.request_sent = u.request_body_sent() != 0;
    o.header_sent = u.header_sent() != 0;
    // SAFETY: r.connection is the live client connection.
    o.client_error = unsafe { (*r.connection).error() } != 0;
    let b = &u.buffer;
    if !b.start.is_null() && !o.header_received {
        o.header_bytes = u32::try_from((b.last as usize).saturating_sub(b.start as usize)).unwrap_or(u32::MAX);
        o.buffer_full = b.last == b.end;
    }
    o
}

unsafe extern "C" fn free_peer<const I: usize>(pc: *mut ngx_peer_connection_t, data: *mut c_void, state: ngx_uint_t) {
    // SAFETY: nginx calls free with u->peer, live for the call; the
    // reference ends before the inner free runs.
    if let Some(pcr) = unsafe { pc.as_ref() } {
        // SAFETY: as above.
        if let Some((r, u)) = unsafe { request_of(pcr) } {
            let failed = state & NGX_PEER_FAILED as ngx_uint_t != 0;
            // SAFETY: r.connection is the live client connection.
            let client_error = unsafe { (*r.connection).error() } != 0;
            // The success path ends here: nothing failed, nothing was heard.
            if failed || client_error || ctx::get(r).is_some() {
                crate::guard((), || observe_free(r, u, pcr, failed));
            }
        }
    }
    if let Some((_, Some(inner))) = PEERS.get(I) {
        // SAFETY: the inner balancer's free with its own data.
        unsafe { inner(pc, data, state) };
    }
}

/// Records how the attempt ended, before the inner free runs (as nginx's
/// own order has it: keepalive takes the connection, round robin counts).
#[cold]
#[inline(never)]
fn observe_free(r: &ngx_http_request_t, u: *mut ngx_http_upstream_t, pc: &ngx_peer_connection_t, failed: bool) {
    // SAFETY: u is r's live upstream.
    let u = unsafe { &*u };
    let Some(idx) = ctx::state_index(r, u.state) else {
        return;
    };
    let obs = snapshot(r, u, pc);
    let seen = ctx::get(r).is_some_and(|c| c.recorded(idx).is_some());
    if !(failed || seen || obs.client_error) {
        return;
    }
    let Some(mut ctx) = ctx::get_or_create(r) else {
        return;
    };
    let end = if failed { End::Failed } else { End::Finalized };
    ctx::record_end(&mut ctx, idx, end, obs, u.upstream);
}

/// The most servers (primaries and backups) looked at in a group.
const PEERS_MAX: usize = 4096;

/// The round-robin peers of an upstream group, as the core's [`Peer`]s.
struct RrPeers {
    /// The list being walked, then its backups.
    list: Option<*const ngx_http_upstream_rr_peers_t>,
    peer: *const ngx_http_upstream_rr_peer_t,
    left: usize,
}

impl Iterator for RrPeers {
    type Item = Peer;

    // time_t and ngx_uint_t are narrower than 64 bits on some targets
    #[allow(clippy::unnecessary_cast)]
    fn next(&mut self) -> Option<Peer> {
        loop {
            if self.left == 0 {
                return None;
            }
            // SAFETY: round robin's peers of a live group, read under the
            // zone's lock when the group has one (see `saturated`).
            if let Some(p) = unsafe { self.peer.as_ref() } {
                self.peer = p.next;
                self.left -= 1;
                return Some(Peer {
                    down: p.down != 0,
                    fails: p.fails as u64,
                    max_fails: p.max_fails as u64,
                    checked: p.checked as i64,
                    fail_timeout: p.fail_timeout as i64,
                    conns: p.conns as u64,
                    max_conns: p.max_conns as u64,
                });
            }
            // SAFETY: as above; `next` is the backup list or null.
            let next = unsafe { self.list.take()?.as_ref()?.next };
            // SAFETY: as above.
            self.peer = unsafe { next.as_ref() }.map_or(core::ptr::null(), |b| b.peer);
            self.list = None;
        }
    }
}

/// Whether the group `us`, whose balancer found no peer to give, is
/// saturated (some live server at its `max_conns`) rather than down.
///
/// Round robin keeps its peers in `us->peer.data`, and so do hash,
/// ip_hash, least_conn and random, which build on it. A balancer that
/// keeps something else there (a third-party one) is told apart by what
/// round robin always sets: the peers' name points at the group's own host
/// name, or, with a `zone`, their slab pool is the zone's. Such a group
/// reads as not saturated, and its failures stay `no_live_upstreams`.
///
/// # Safety
/// `us` is null or a live upstream group of the running configuration.
#[cold]
unsafe fn saturated(us: *mut ngx_http_upstream_srv_conf_t) -> bool {
    // SAFETY: per the contract.
    let Some(us) = (unsafe { us.as_mut() }) else {
        return false;
    };
    let peers = us.peer.data.cast::<ngx_http_upstream_rr_peers_t>();
    // SAFETY: null or the data the group's init_upstream set; read as
    // round robin's only after the checks below.
    let Some(p) = (unsafe { peers.as_mut() }) else {
        return false;
    };
    let in_zone = in_zone(us, p);
    if !in_zone && !core::ptr::eq(p.name, &us.host) {
        return false;
    }
    // SAFETY: ngx_cached_time is always valid in a running nginx.
    #[allow(clippy::unnecessary_cast)] // time_t is 32 bits on some targets
    let now = unsafe { (*ngx::ffi::ngx_cached_time).sec } as i64;
    let single = p.single() != 0;
    let first = p.peer;
    let read = || {
        let all = RrPeers {
            list: Some(peers),
            peer: first,
            left: PEERS_MAX,
        };
        upstream_cause_core::peers::saturated(all, now, single)
    };
    if in_zone {
        read_locked(p, read)
    } else {
        read()
    }
}

/// Whether the group's peers live in its `zone` (shared between workers).
#[cfg(ngx_feature = "http_upstream_zone")]
fn in_zone(us: &ngx_http_upstream_srv_conf_t, p: &ngx_http_upstream_rr_peers_t) -> bool {
    // SAFETY: null or the group's live shared zone.
    unsafe { us.shm_zone.as_ref() }.is_some_and(|z| !p.shpool.is_null() && z.shm.addr.cast() == p.shpool)
}

/// Runs `f` under the zone's read lock: round robin reads the shared peers
/// under it, so do we. `f` does not panic (it only walks the list). The
/// backup servers have a lock of their own, not taken: their counters are
/// read as they are at that moment, which is all an answer about the past
/// attempt needs.
#[cfg(ngx_feature = "http_upstream_zone")]
fn read_locked(p: &mut ngx_http_upstream_rr_peers_t, f: impl FnOnce() -> bool) -> bool {
    let lock = &raw mut p.rwlock;
    // SAFETY: the zone's peers lock, as round robin takes it.
    unsafe { ngx::ffi::ngx_rwlock_rlock(lock) };
    let full = f();
    // SAFETY: taken above.
    unsafe { ngx::ffi::ngx_rwlock_unlock(lock) };
    full
}

#[cfg(not(ngx_feature = "http_upstream_zone"))]
fn in_zone(_: &ngx_http_upstream_srv_conf_t, _: &ngx_http_upstream_rr_peers_t) -> bool {
    false
}

#[cfg(not(ngx_feature = "http_upstream_zone"))]
fn read_locked(_: &mut ngx_http_upstream_rr_peers_t, f: impl FnOnce() -> bool) -> bool {
    f()
}
