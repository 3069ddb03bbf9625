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

use ngx::ffi::{
    ngx_conf_t, ngx_event_free_peer_pt, ngx_event_get_peer_pt, ngx_http_log_ctx_t, ngx_http_request_t,
    ngx_http_upstream_init_peer_pt, ngx_http_upstream_srv_conf_t, ngx_http_upstream_t, ngx_int_t, ngx_msec_t,
    ngx_peer_connection_t, ngx_uint_t, NGX_BUSY, NGX_ERROR, NGX_LOG_WARN, NGX_OK, NGX_PEER_FAILED,
};
use ngx::http::{HttpModuleMainConf, NgxHttpUpstreamModule};
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

/// The request and upstream `pc` belongs to.
///
/// # Safety
/// `pc` is a live peer connection handed to us by nginx.
unsafe fn request_of(
    pc: *mut ngx_peer_connection_t,
) -> Option<(&'static mut ngx_http_request_t, *mut ngx_http_upstream_t)> {
    // Computed, not dereferenced, until a request says it is its upstream.
    let u = pc
        .cast::<u8>()
        .wrapping_sub(core::mem::offset_of!(ngx_http_upstream_t, peer))
        .cast::<ngx_http_upstream_t>();
    // SAFETY: pc->log is the request's connection log (set by nginx's
    // upstream init), whose data is the HTTP log context.
    let lctx = unsafe { (*pc).log.as_ref()?.data.cast::<ngx_http_log_ctx_t>().as_ref()? };
    if lctx.request.is_null() {
        return None;
    }
    for r in [lctx.current_request, lctx.request] {
        // SAFETY: with `request` set, both are live requests of the connection.
        if let Some(req) = unsafe { r.as_mut() } {
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
        // SAFETY: nginx calls get with u->peer.
        let Some((r, u)) = (unsafe { request_of(pc) }) else {
            return;
        };
        // SAFETY: the request's live connection log.
        unsafe { crate::tap::arm((*r.connection).log) };
        if rc == NGX_BUSY as ngx_int_t {
            // SAFETY: u is r's live upstream.
            let (state, us) = unsafe { ((*u).state, (*u).upstream) };
            if let (Some(idx), Some(ctx)) = (ctx::state_index(r, state), ctx::get_or_create(r)) {
                ctx::record_end(ctx, idx, End::NoLivePeer, Observation::default(), us);
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
    // SAFETY: nginx calls free with u->peer.
    if let Some((r, u)) = unsafe { request_of(pc) } {
        let failed = state & NGX_PEER_FAILED as ngx_uint_t != 0;
        // SAFETY: r.connection is the live client connection.
        let client_error = unsafe { (*r.connection).error() } != 0;
        // The success path ends here: nothing failed, nothing was heard.
        if failed || client_error || ctx::get(r).is_some() {
            crate::guard((), || observe_free(r, u, pc, failed));
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
fn observe_free(r: &mut ngx_http_request_t, u: *mut ngx_http_upstream_t, pc: *mut ngx_peer_connection_t, failed: bool) {
    // SAFETY: u is r's live upstream; pc is its peer connection.
    let (u, pc) = unsafe { (&*u, &*pc) };
    let Some(idx) = ctx::state_index(r, u.state) else {
        return;
    };
    let obs = snapshot(r, u, pc);
    let seen = ctx::get(r).is_some_and(|c| c.recorded(idx).is_some());
    if !(failed || seen || obs.client_error) {
        return;
    }
    let Some(ctx) = ctx::get_or_create(r) else {
        return;
    };
    let end = if failed { End::Failed } else { End::Finalized };
    ctx::record_end(ctx, idx, end, obs, u.upstream);
}
