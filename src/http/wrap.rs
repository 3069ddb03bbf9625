//! Wrapping every upstream's balancer to observe each attempt.
//!
//! Like the keepalive module: in postconfiguration (after every
//! `init_upstream` ran) each `uscf->peer.init` is replaced by ours; ours
//! calls the original, then puts our `free` in front of the inner
//! balancer's. (`get` is not wrapped: when it has no peer to give, nginx
//! says "no live upstreams" on the request's log, and the tap hears it.) Being the outermost wrapper composes with keepalive, hash,
//! least_conn and the rest.
//!
//! Nothing is allocated per request: `u->peer.data` stays the inner
//! balancer's (so `notify` and `set_session`/`save_session` need no
//! wrapping), and which inner `free` to call is said by the wrapper
//! itself (one instantiation per distinct function, see the tables in
//! `crate::slots`). What `free` sees is handed to `super::observe`.

use core::ffi::c_void;

use ngx::ffi::{
    ngx_conf_t, ngx_event_free_peer_pt, ngx_http_request_t, ngx_http_upstream_init_peer_pt,
    ngx_http_upstream_srv_conf_t, ngx_int_t, ngx_peer_connection_t, ngx_uint_t, NGX_ERROR, NGX_LOG_WARN, NGX_OK,
    NGX_PEER_FAILED,
};
use ngx::http::{HttpModuleMainConf, NgxHttpUpstreamModule};

use super::observe;
use crate::slots::{same_fn, wrap, wrappers, Slots, N};

type InitFn = unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_http_upstream_srv_conf_t) -> ngx_int_t;
type FreeFn = unsafe extern "C" fn(*mut ngx_peer_connection_t, *mut c_void, ngx_uint_t);

/// The original `peer.init` functions.
static INITS: Slots<ngx_http_upstream_init_peer_pt> = Slots::new();
static INIT_WRAPPERS: [InitFn; N] = wrappers!(init_peer);

/// The inner balancers' `free`.
static PEERS: Slots<ngx_event_free_peer_pt> = Slots::new();
static FREE_WRAPPERS: [FreeFn; N] = wrappers!(free_peer);

fn init_addr(f: InitFn) -> usize {
    f as usize
}

/// Replaces `peer.init` of every upstream (explicit `upstream {}` blocks and
/// the implicit ones of `proxy_pass http://addr`). Called from
/// postconfiguration, after the upstream module's init_main_conf set them.
pub fn wrap_all(cf: &mut ngx_conf_t) {
    let Some(umcf) = NgxHttpUpstreamModule::main_conf(cf) else {
        return;
    };
    // SAFETY: `upstreams` is an array of uscf pointers.
    let upstreams = unsafe { umcf.upstreams.as_slice::<*mut ngx_http_upstream_srv_conf_t>() };
    for &uscf in upstreams {
        // SAFETY: valid uscf pointers owned by the upstream module.
        let Some(us) = (unsafe { uscf.as_mut() }) else { continue };
        if wrap(&INITS, &mut us.peer.init, &INIT_WRAPPERS, init_addr).is_err() {
            ngx::ngx_conf_log_error!(
                NGX_LOG_WARN,
                cf,
                "upstream_cause: too many kinds of balancers, \"{}\" is not observed",
                String::from_utf8_lossy(us.host.as_bytes())
            );
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
            // SAFETY: nginx calls peer.init with a live request, whose
            // upstream the original init just set up.
            if let Some(r) = unsafe { r.as_mut() } {
                if super::conf::enabled(r) {
                    install(r);
                }
            }
        });
    }
    rc
}

/// Puts our free in front of the one the original init set.
fn install(r: &mut ngx_http_request_t) {
    // SAFETY: the request's upstream, live while the request is.
    let Some(u) = (unsafe { r.upstream.as_mut() }) else {
        return;
    };
    let p = &mut u.peer;
    if p.free.is_none() {
        return;
    }
    // No slot left: nginx works exactly as without us for this balancer.
    if let Some(i) = PEERS.find_or_add(p.free, |a, b| same_fn(*a, *b, |f: FreeFn| f as usize)) {
        p.free = Some(FREE_WRAPPERS[i]);
    }
}

unsafe extern "C" fn free_peer<const I: usize>(pc: *mut ngx_peer_connection_t, data: *mut c_void, state: ngx_uint_t) {
    // SAFETY: nginx calls free with u->peer, live for the call; the
    // reference ends before the inner free runs.
    if let Some(pcr) = unsafe { pc.as_ref() } {
        let failed = state & NGX_PEER_FAILED as ngx_uint_t != 0;
        // The success path ends here: nothing failed, no request of the
        // worker has a context, the client is still there.
        if failed || super::ctx::any() || observe::client_error(pcr) {
            observe::free(pcr, failed);
        }
    }
    if let Some(Some(inner)) = PEERS.get(I) {
        // SAFETY: the inner balancer's free with its own data.
        unsafe { inner(pc, data, state) };
    }
}
