//! Counting a request's failures in the zone's table (log phase).

use ngx::ffi::{ngx_http_request_t, ngx_http_upstream_state_t, ngx_uint_t, NGX_HTTP_UPSTREAM_CREATE};
use upstream_cause_core::metrics::Key;
use upstream_cause_core::render::fmt_u64;
use upstream_cause_core::{Observed, Summary};

use super::conf::MainConf;
use super::ctx::{peer_label, Upstream};
use crate::zone::HostPort;

/// The `upstream` label: the group's name, or host:port of an implicit
/// upstream (`proxy_pass http://127.0.0.1:8081`, or a variable's value).
fn upstream_label(us: Option<Upstream>, r: &ngx_http_request_t) -> HostPort {
    if let Some(us) = us {
        let us = us.conf();
        if us.flags & NGX_HTTP_UPSTREAM_CREATE as ngx_uint_t != 0 || us.port == 0 {
            return HostPort::of(&[us.host.as_bytes()]);
        }
        let mut port = upstream_cause_core::render::NumBuf::new();
        return HostPort::of(&[us.host.as_bytes(), b":", fmt_u64(&mut port, u64::from(us.port))]);
    }
    // SAFETY: the request's upstream and its resolved part, if any.
    if let Some(res) = unsafe { r.upstream.as_ref().and_then(|u| u.resolved.as_ref()) } {
        let mut port = upstream_cause_core::render::NumBuf::new();
        return HostPort::of(&[res.host.as_bytes(), b":", fmt_u64(&mut port, u64::from(res.port))]);
    }
    HostPort::of(&[b"-"])
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
    crate::zone::count(mcf.zone, log, |add| {
        // The label of the last group named, made again only for another
        // (a request's attempts and response are usually all one group's).
        let mut last: Option<(Option<Upstream>, HostPort)> = None;
        for (idx, cause) in summary.failures() {
            let up = label_of(&mut last, summary.upstream(idx, observed), r);
            add(&Key::attempt(up, peer_label(states.get(idx)), cause));
        }
        if let Some(o) = summary.outcome() {
            let up = label_of(&mut last, o.upstream, r);
            add(&Key::response(up, o.cause, status));
        }
    });
}
