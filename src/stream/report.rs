//! What a session reports: `$upstream_cause`, `$upstream_cause_list`,
//! `$upstream_cause_detail` for stream's `log_format`, and at the log
//! phase its counters and its one enriched line, all from its summary.

use ngx::ffi::{
    ngx_int_t, ngx_stream_session_t, ngx_stream_upstream_srv_conf_t, ngx_stream_variable_t,
    ngx_stream_variable_value_t, ngx_uint_t, NGX_DECLINED, NGX_ERROR, NGX_LOG_INFO, NGX_STREAM_UPSTREAM_CREATE,
};
use ngx::ngx_string;
use std::cell::RefCell;

use upstream_cause_core::live::{Failure, Kind, SuccessFilter};
use upstream_cause_core::metrics::Key;
use upstream_cause_core::render::{fmt_u64, FixedBuf, LogLine, NumBuf};
use upstream_cause_core::{At, Cause, Entry, Observed, Summary};

use super::session::{self, Group};
use crate::vars::{CAUSE, DETAIL, LIST};
use crate::zone::HostPort;

const fn var(name: ngx::ffi::ngx_str_t, data: usize) -> ngx_stream_variable_t {
    ngx_stream_variable_t {
        name,
        set_handler: None,
        get_handler: Some(get),
        data,
        flags: ngx::ffi::NGX_STREAM_VAR_NOCACHEABLE as ngx_uint_t,
        index: 0,
    }
}

pub static mut VARS: [ngx_stream_variable_t; 3] = [
    var(ngx_string!("upstream_cause"), CAUSE),
    var(ngx_string!("upstream_cause_list"), LIST),
    var(ngx_string!("upstream_cause_detail"), DETAIL),
];

fn value(s: &ngx_stream_session_t, v: &mut ngx_stream_variable_value_t, which: usize) -> ngx_int_t {
    if !super::enabled(s) {
        return crate::vars::empty(v);
    }
    let observed = session::get(s).and_then(session::Ctx::observed);
    let summary = session::summary(s, observed.as_deref());
    // SAFETY: the live session's connection, whose pool outlives the value.
    let pool = unsafe { (*s.connection).pool };
    crate::vars::fill(pool, v, which, &summary, observed.as_deref())
}

unsafe extern "C" fn get(s: *mut ngx_stream_session_t, v: *mut ngx_stream_variable_value_t, data: usize) -> ngx_int_t {
    crate::guard(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx evaluates variables of a live session, into a
        // valid value to fill.
        match unsafe { (s.as_ref(), v.as_mut()) } {
            (Some(s), Some(v)) => value(s, v, data),
            _ => NGX_ERROR as ngx_int_t,
        }
    })
}

pub unsafe extern "C" fn log_handler(s: *mut ngx_stream_session_t) -> ngx_int_t {
    // SAFETY: nginx runs log-phase handlers with a live session.
    let Some(s) = (unsafe { s.as_ref() }) else {
        return NGX_DECLINED as ngx_int_t;
    };
    // Off here: nothing to report. Nothing failed (no context): only the
    // peers' successes, for the live view.
    if super::enabled(s) {
        match session::get(s) {
            Some(ctx) => crate::guard((), || report(s, ctx)),
            None => crate::guard((), || successes(s)),
        }
    }
    NGX_DECLINED as ngx_int_t
}

thread_local! {
    /// The worker's successes recorded lately (see `zone::success`).
    static SUCCESSES: RefCell<SuccessFilter> = RefCell::new(SuccessFilter::default());
}

/// Records a successful attempt of the peer in the live view (the
/// group's label made only if the zone's lock is taken).
fn success(zone: *mut ngx::ffi::ngx_shm_zone_t, g: Option<Group>, s: &ngx_stream_session_t, peer: &[u8]) {
    let group = g
        .as_ref()
        .map_or(core::ptr::null(), |g| core::ptr::from_ref(g.conf()).cast());
    let id = crate::zone::success_id(Kind::Stream, group, peer);
    SUCCESSES.with(|f| {
        if let Ok(mut f) = f.try_borrow_mut() {
            crate::zone::success(zone, &mut f, Kind::Stream, id, peer, || upstream_label(g, s));
        }
    });
}

/// A session none of whose attempts failed: ends its peers' rows of
/// failures in the live view (nothing is done while the zone has recorded
/// no failure).
fn successes(s: &ngx_stream_session_t) {
    let Some(zone) = super::session_main_conf(s).map(|m| m.zone).filter(|z| !z.is_null()) else {
        return;
    };
    if !crate::zone::has_failures(zone) {
        return;
    }
    // SAFETY: the session's upstream, if any, is live in the log phase.
    let g = unsafe { s.upstream.as_ref() }.and_then(Group::of);
    for st in session::states(s) {
        if !st.peer.is_null() {
            success(zone, g, s, session::peer_label(Some(st)));
        }
    }
}

/// The session as the live view's recent failures show it
/// ([`upstream_cause_core::live::session_text`]).
fn session_text(s: &ngx_stream_session_t, buf: &mut [u8]) -> usize {
    // SAFETY: the session's connection is live in the log phase.
    let c = unsafe { &*s.connection };
    let mut digits = NumBuf::new();
    let port = (!c.local_sockaddr.is_null()).then(|| {
        // SAFETY: the connection's local address, set when it was accepted.
        let port = unsafe { ngx::ffi::ngx_inet_get_port(c.local_sockaddr) };
        fmt_u64(&mut digits, u64::from(port))
    });
    let mut out = FixedBuf::new(buf);
    upstream_cause_core::live::session_text(&mut out, c.type_ == libc::SOCK_DGRAM, c.addr_text.as_bytes(), port);
    out.len()
}

/// Counts the session's failures and writes its enriched line.
#[cold]
#[inline(never)]
fn report(s: &ngx_stream_session_t, ctx: &session::Ctx) {
    let Some(observed) = ctx.observed() else { return };
    let summary = session::summary(s, Some(&observed));
    if let Some(mcf) = super::session_main_conf(s) {
        count(s, mcf.zone, &summary, &observed);
    }
    let Some(level) = super::session_srv_conf(s).and_then(|c| c.log_level()) else {
        return;
    };
    let status = u16::try_from(s.status).unwrap_or(0);
    let peer = |at| match at {
        At::Attempt(idx) => session::peer_label(session::states(s).get(idx)),
        At::BeforeAny => b"-",
    };
    let Some(line) = LogLine::of(&summary, Some(&observed), status, peer) else {
        return;
    };
    // An idle session's end is ordinary for pools of long-lived
    // connections: said at info, as nginx says it.
    let level = if line.cause == Cause::IdleTimeout {
        level.max(NGX_LOG_INFO as ngx_uint_t)
    } else {
        level
    };
    // SAFETY: the session's connection and its log are live in the log phase.
    let Some(log) = (unsafe { (*s.connection).log.as_mut() }) else {
        return;
    };
    if log.log_level >= level {
        crate::tap::write_line(log, level, &line);
    }
}

/// The `upstream` label: the group's name, host:port of an implicit one
/// (`proxy_pass 127.0.0.1:5432`), or what a variable resolved to.
fn upstream_label(g: Option<Group>, s: &ngx_stream_session_t) -> HostPort {
    let mut port = NumBuf::new();
    if let Some(g) = g {
        let us: &ngx_stream_upstream_srv_conf_t = g.conf();
        return HostPort::group(
            us.host.as_bytes(),
            us.port,
            us.flags & NGX_STREAM_UPSTREAM_CREATE as ngx_uint_t != 0,
        );
    }
    // SAFETY: the session's upstream and its resolved part, if any.
    if let Some(res) = unsafe { s.upstream.as_ref().and_then(|u| u.resolved.as_ref()) } {
        return HostPort::of(&[res.host.as_bytes(), b":", fmt_u64(&mut port, u64::from(res.port))]);
    }
    HostPort::of(&[b"-"])
}

/// Counts the session's failed attempts and, if its final outcome was a
/// failure, the session with the status nginx logs for it.
fn count(
    s: &ngx_stream_session_t,
    zone: *mut ngx::ffi::ngx_shm_zone_t,
    summary: &Summary<Group>,
    observed: &Observed<Group>,
) {
    if !summary.counts() || zone.is_null() {
        return;
    }
    let status = u16::try_from(s.status).unwrap_or(0);
    let states = session::states(s);
    // SAFETY: the session's connection log is live.
    let log = unsafe { (*s.connection).log };
    let ms = crate::zone::now_ms();
    let mut buf = [0u8; 128];
    let len = session_text(s, &mut buf);
    let text = &buf[..len];
    crate::zone::count(zone, log, |add| {
        for (idx, cause) in summary.failures() {
            let up = upstream_label(summary.upstream(idx, Some(observed)), s);
            let peer = session::peer_label(states.get(idx));
            let failure = Failure {
                kind: Kind::Stream,
                upstream: up.as_bytes(),
                peer,
                cause,
                detail: observed.detail(At::Attempt(idx)),
                status,
                attempt: u16::try_from(idx + 1).unwrap_or(u16::MAX),
                request: text,
                ms,
            };
            add(&Key::stream_attempt(up.as_bytes(), peer, cause), Some(&failure));
        }
        if let Some(o) = summary.outcome() {
            let up = upstream_label(o.upstream, s);
            add(&Key::session(up.as_bytes(), o.cause, status), None);
        }
    });
    // the attempts that succeeded (a retry's last, say)
    for (idx, e) in summary.entries().iter().enumerate() {
        if matches!(e, Entry::Attempt(None)) && states.get(idx).is_some_and(|st| !st.peer.is_null()) {
            success(
                zone,
                summary.upstream(idx, Some(observed)),
                s,
                session::peer_label(states.get(idx)),
            );
        }
    }
}
