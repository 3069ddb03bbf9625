//! Counting a request's failures in the zone's table, and recording its
//! attempts in the live view (log phase).

use std::cell::RefCell;

use ngx::ffi::{ngx_http_request_t, ngx_http_upstream_state_t, ngx_uint_t, NGX_HTTP_UPSTREAM_CREATE};
use upstream_cause_core::live::{Failure, Kind, SuccessFilter};
use upstream_cause_core::metrics::Key;
use upstream_cause_core::render::fmt_u64;
use upstream_cause_core::{At, Entry, Observed, Summary};

use super::conf::MainConf;
use super::ctx::{peer_label, Upstream};
use crate::zone::HostPort;

/// The `upstream` label: the group's name, or host:port of an implicit
/// upstream (`proxy_pass http://127.0.0.1:8081`, or a variable's value).
fn upstream_label(us: Option<Upstream>, r: &ngx_http_request_t) -> HostPort {
    if let Some(us) = us {
        return group_label(us.conf());
    }
    // SAFETY: the request's upstream and its resolved part, if any.
    if let Some(res) = unsafe { r.upstream.as_ref().and_then(|u| u.resolved.as_ref()) } {
        let mut port = upstream_cause_core::render::NumBuf::new();
        return HostPort::of(&[res.host.as_bytes(), b":", fmt_u64(&mut port, u64::from(res.port))]);
    }
    HostPort::of(&[b"-"])
}

/// A group's `upstream` label: its name, or host:port of an implicit one.
pub fn group_label(us: &ngx::ffi::ngx_http_upstream_srv_conf_t) -> HostPort {
    HostPort::group(
        us.host.as_bytes(),
        us.port,
        us.flags & NGX_HTTP_UPSTREAM_CREATE as ngx_uint_t != 0,
    )
}

/// The `upstream` label of `us`, made only if `last` is another group's.
fn label_of<'a>(
    last: &'a mut Option<(Option<Upstream>, HostPort)>,
    us: Option<Upstream>,
    r: &ngx_http_request_t,
) -> &'a [u8] {
    if !matches!(last, Some((u, _)) if *u == us) {
        *last = Some((us, upstream_label(us, r)));
    }
    last.as_ref().map_or(b"-", |(_, l)| l.as_bytes())
}

thread_local! {
    /// The worker's successes recorded lately (see `zone::success`).
    static SUCCESSES: RefCell<SuccessFilter> = RefCell::new(SuccessFilter::default());
}

/// Records a successful attempt of the peer in the live view (the
/// group's label made only if the zone's lock is taken).
fn success(mcf: &MainConf, us: Option<Upstream>, r: &ngx_http_request_t, peer: &[u8]) {
    let group = us.map_or(core::ptr::null(), |us| core::ptr::from_ref(us.conf()).cast());
    let id = crate::zone::success_id(Kind::Http, group, peer);
    SUCCESSES.with(|f| {
        if let Ok(mut f) = f.try_borrow_mut() {
            crate::zone::success(mcf.zone, &mut f, Kind::Http, id, peer, || upstream_label(us, r));
        }
    });
}

/// A request none of whose attempts failed: ends its peers' rows of
/// failures in the live view (nothing is done while the zone has recorded
/// no failure; see `zone::success`).
pub fn successes(r: &ngx_http_request_t, mcf: &MainConf) {
    if mcf.zone.is_null() || !crate::zone::has_failures(mcf.zone) {
        return;
    }
    // SAFETY: the request's upstream, if any, is live in the log phase.
    let us = unsafe { r.upstream.as_ref() }.and_then(Upstream::of);
    for st in super::ctx::states(r) {
        if !st.peer.is_null() {
            success(mcf, us, r, peer_label(Some(st)));
        }
    }
}

/// Counts the request's failed attempts and, if its final status was
/// produced by an upstream failure (or passed on from the upstream's own
/// 5xx), the response.
pub fn count(
    r: &ngx_http_request_t,
    mcf: &MainConf,
    summary: &Summary<Upstream>,
    observed: Option<&Observed<Upstream>>,
    states: &[ngx_http_upstream_state_t],
) {
    if !summary.counts() {
        return;
    }
    let status = u16::try_from(r.headers_out.status).unwrap_or(0);
    // SAFETY: the request's connection log is live.
    let log = unsafe { (*r.connection).log };
    let ms = crate::zone::now_ms();
    crate::zone::count(mcf.zone, log, |add| {
        // The label of the last group named, made again only for another
        // (a request's attempts and response are usually all one group's).
        let mut last: Option<(Option<Upstream>, HostPort)> = None;
        for (idx, cause) in summary.failures() {
            let up = label_of(&mut last, summary.upstream(idx, observed), r);
            let peer = peer_label(states.get(idx));
            let failure = Failure {
                kind: Kind::Http,
                upstream: up,
                peer,
                cause,
                detail: observed.map_or(&[][..], |o| o.detail(At::Attempt(idx))),
                status,
                attempt: u16::try_from(idx + 1).unwrap_or(u16::MAX),
                request: r.request_line.as_bytes(),
                ms,
            };
            add(&Key::attempt(up, peer, cause), Some(&failure));
        }
        if let Some(o) = summary.outcome() {
            let up = label_of(&mut last, o.upstream, r);
            add(&Key::response(up, o.cause, status), None);
        }
    });
    // the attempts that succeeded (a retry's last, say)
    for (idx, e) in summary.entries().iter().enumerate() {
        if matches!(e, Entry::Attempt(None)) && states.get(idx).is_some_and(|s| !s.peer.is_null()) {
            success(mcf, summary.upstream(idx, observed), r, peer_label(states.get(idx)));
        }
    }
}
