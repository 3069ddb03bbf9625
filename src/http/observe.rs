//! What the module hears of each attempt, written into the request's
//! context: the balancer's `free` (from `wrap/balancer.rs`), and the error
//! lines nginx logs (from the log tap, `tap.rs`), among them "no live
//! upstreams", said when the balancer's `get` had no peer to give.
//!
//! Both find the request from a connection log: nginx writes every
//! upstream line of a request on `r->connection->log`, and the peer
//! connection's log is that one too. Its context names the request nginx
//! is working on.

use core::ptr;

use ngx::ffi::{ngx_http_log_ctx_t, ngx_http_request_t, ngx_http_upstream_t, ngx_log_t, ngx_peer_connection_t};
use upstream_cause_core::observed::heard;
use upstream_cause_core::{At, End, MessageKind, Observation};

use super::ctx::{self, Upstream};

/// The requests a connection log names: the one nginx is working on
/// (`current_request`, a subrequest or an HTTP/2 stream's), then the
/// connection's main request. None between keepalive requests.
fn logged_requests(log: &ngx_log_t) -> impl Iterator<Item = &ngx_http_request_t> {
    // SAFETY: the tap is only armed on HTTP connection logs, and a peer
    // connection's log is one: their data is an ngx_http_log_ctx_t
    // (ngx_http_init_connection, HTTP/2 streams).
    let lctx = unsafe { log.data.cast::<ngx_http_log_ctx_t>().as_ref() };
    let (current, main) = lctx.map_or((ptr::null_mut(), ptr::null_mut()), |l| (l.current_request, l.request));
    let both = if main.is_null() {
        [ptr::null_mut(); 2]
    } else {
        [current, main]
    };
    // SAFETY: with `request` set, both are live requests of the
    // connection, for the whole of nginx's call that logs or gets here.
    both.into_iter().filter_map(|r| unsafe { r.as_ref() })
}

/// The request `pc` is the upstream peer of, and that upstream.
fn request_of(pc: &ngx_peer_connection_t) -> Option<(&ngx_http_request_t, &ngx_http_upstream_t)> {
    // Computed, not dereferenced, until a request says it is its upstream.
    let u = ptr::from_ref(pc)
        .cast::<u8>()
        .wrapping_sub(core::mem::offset_of!(ngx_http_upstream_t, peer))
        .cast::<ngx_http_upstream_t>();
    // SAFETY: pc->log is the request's connection log (set by nginx's
    // upstream init).
    let log = unsafe { pc.log.as_ref()? };
    let r = logged_requests(log).find(|r| ptr::eq(r.upstream, u))?;
    // SAFETY: the request's own upstream, live while it is.
    Some((r, unsafe { &*u }))
}

/// Whether the client connection of `pc`'s request has failed.
#[inline]
pub fn client_error(pc: &ngx_peer_connection_t) -> bool {
    // SAFETY: pc->log is null or the request's connection log, whose data
    // is an ngx_http_log_ctx_t (see logged_requests) naming the client
    // connection (the stream's, for HTTP/2), live while the request is.
    unsafe {
        pc.log
            .as_ref()
            .and_then(|l| l.data.cast::<ngx_http_log_ctx_t>().as_ref())
            .and_then(|lctx| lctx.connection.as_ref())
            .is_some_and(|c| c.error() != 0)
    }
}

/// Our `free` wrapper's call (`crate::slots::balancer!`). The success
/// path ends here: nothing failed, no request of the worker has a
/// context, the client is still there.
#[inline]
pub fn on_free(pc: &ngx_peer_connection_t, failed: bool) {
    if failed || super::ctx::any() || client_error(pc) {
        free(pc, failed);
    }
}

/// The balancer's `free`, before the inner free runs (as nginx's own order
/// has it: keepalive takes the connection, round robin counts), when the
/// attempt failed, a request of the worker has a context or the client
/// failed (else nothing can have been heard of it).
#[cold]
#[inline(never)]
pub fn free(pc: &ngx_peer_connection_t, failed: bool) {
    let Some((r, u)) = request_of(pc) else { return };
    // SAFETY: r.connection is the live client connection.
    let client_error = unsafe { (*r.connection).error() } != 0;
    // The success path ends here: nothing failed, nothing was heard.
    if failed || client_error || ctx::get(r).is_some() {
        crate::guard((), || end(r, u, pc, failed));
    }
}

/// Records how the attempt ended, if it failed or was heard of.
#[cold]
#[inline(never)]
fn end(r: &ngx_http_request_t, u: &ngx_http_upstream_t, pc: &ngx_peer_connection_t, failed: bool) {
    let Some(idx) = ctx::state_index(r, u.state) else {
        return;
    };
    let obs = snapshot(r, u, pc);
    let seen = ctx::get(r).is_some_and(|c| c.watched(idx));
    if !(failed || seen || obs.client_error) {
        return;
    }
    let Some(mut ctx) = ctx::get_or_create(r) else {
        return;
    };
    let end = if failed { End::Failed } else { End::Finalized };
    ctx.end(r, idx, end, obs, Upstream::of(u));
}

/// What the attempt looks like right now, before the inner free runs.
fn snapshot(r: &ngx_http_request_t, u: &ngx_http_upstream_t, pc: &ngx_peer_connection_t) -> Observation {
    let mut o = Observation::default();
    crate::peer::connection_flags(pc, &mut o);
    // SAFETY: u.state is the attempt's live state.
    if let Some(st) = unsafe { u.state.as_ref() } {
        o.connected = st.connect_time != ngx::ffi::ngx_msec_t::MAX;
        o.header_received = ctx::header_received(st);
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

/// An error line nginx wrote on a log the tap is on: recorded for the
/// attempt of the request nginx is working on, if it is an upstream
/// failure and the module is on there.
pub fn line(log: &ngx_log_t, line: &[u8]) {
    // A location's log is tapped for all its lines: those of requests
    // without an upstream are not read.
    let Some(r) = logged_requests(log).next() else { return };
    if r.upstream.is_null() || !super::conf::enabled(r) {
        return;
    }
    let Some(heard) = heard(line, crate::tap::action(log)) else {
        return;
    };
    let no_live = heard.message.kind == MessageKind::NoLiveUpstreams;
    // None also when the context is held by the code that is logging.
    let Some(mut ctx) = ctx::get_or_create(r) else { return };
    let at: At = ctx::current_attempt(r);
    ctx.hear(r, at, heard);
    // nginx logs "no live upstreams" right after the balancer's get found
    // no peer to give, before it moves on: the group's peers say now
    // whether they are all down or all busy.
    if let (true, At::Attempt(idx)) = (no_live, at) {
        // SAFETY: the request's upstream (checked above), live while it is.
        let u = unsafe { &*r.upstream };
        // SAFETY: the request's upstream group, live for the cycle.
        let saturated = unsafe { u.upstream.as_mut() }.is_some_and(super::saturation::saturated);
        let obs = Observation {
            saturated,
            ..Default::default()
        };
        ctx.end(r, idx, End::NoLivePeer, obs, Upstream::of(u));
    }
}
