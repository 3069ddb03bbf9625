//! The log tap: the exact text (errno, phase) of each attempt's failure.
//!
//! nginx writes every upstream error line of a request on one object,
//! `r->connection->log` (the peer connection's `c->log` is set to it on each
//! attempt). Armed in `peer.get`, the tap puts its own writer on that log,
//! records the upstream lines for the request's current attempt, and
//! forwards every line exactly as nginx would have written it. It is
//! disarmed by the request pool's cleanup; if nginx replaced the log's
//! writer meanwhile (`ngx_set_connection_log` on a location change), the tap
//! is simply gone and is armed again by the next `peer.get`.

use core::cell::Cell;
use core::ffi::{c_void, CStr};
use core::ptr;

use ngx::ffi::{
    ngx_http_log_ctx_t, ngx_http_request_t, ngx_int_t, ngx_log_t, ngx_log_writer_pt, ngx_uint_t, u_char, NGX_DECLINED,
    NGX_LOG_ERR,
};
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule};
use upstream_cause_core::text::{extract_message, parse_message, MessageKind, Phase};

use crate::ctx::{self, Records, BEFORE_ANY, DETAIL_MAX};

pub struct Tap {
    log: *mut ngx_log_t,
    saved_writer: ngx_log_writer_pt,
    saved_wdata: *mut c_void,
    saved_level: ngx_uint_t,
}

thread_local! {
    /// Set while the tap itself (or our own enriched line) is logging, so
    /// nothing is recorded recursively.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the tap's recording suspended (for our own log lines).
pub fn suspended<R>(f: impl FnOnce() -> R) -> R {
    let was = BUSY.with(|b| b.replace(true));
    let r = f();
    BUSY.with(|b| b.set(was));
    r
}

const OUR_WRITER: unsafe extern "C" fn(*mut ngx_log_t, ngx_uint_t, *mut u_char, usize) = writer;

/// Whether the log's writer is the tap's. Function addresses are compared
/// as nginx's C does; the crate is one codegen unit, so ours is unique.
fn is_ours(w: ngx_log_writer_pt) -> bool {
    w.map(|f| f as usize) == Some(OUR_WRITER as *const () as usize)
}

impl Tap {
    pub const fn new() -> Tap {
        Tap {
            log: ptr::null_mut(),
            saved_writer: None,
            saved_wdata: ptr::null_mut(),
            saved_level: 0,
        }
    }

    /// Puts the tap on `log` unless a tap is already there.
    ///
    /// # Safety
    /// `log` is the live connection log of the request owning this Tap, and
    /// the Tap does not move until [`Tap::disarm`] (it lives in pool memory).
    pub unsafe fn arm(&mut self, log: *mut ngx_log_t) {
        // SAFETY: per the contract, a live log.
        let Some(l) = (unsafe { log.as_mut() }) else { return };
        if is_ours(l.writer) {
            return;
        }
        self.log = log;
        self.saved_writer = l.writer;
        self.saved_wdata = l.wdata;
        self.saved_level = l.log_level;
        l.writer = Some(OUR_WRITER);
        l.wdata = ptr::from_mut(self).cast();
        // Lines must be formatted to be seen, even under `error_log ... crit`.
        if l.log_level < NGX_LOG_ERR as ngx_uint_t {
            l.log_level = NGX_LOG_ERR as ngx_uint_t;
        }
    }

    /// Restores the log, if this tap is still the one on it.
    pub fn disarm(&mut self) {
        // SAFETY: `self.log` was a live connection log when armed; the
        // connection outlives the request pool whose cleanup calls this.
        if let Some(l) = unsafe { self.log.as_mut() } {
            if is_ours(l.writer) && l.wdata == ptr::from_mut(self).cast() {
                l.writer = self.saved_writer;
                l.wdata = self.saved_wdata;
                l.log_level = self.saved_level;
            }
        }
        self.log = ptr::null_mut();
    }
}

unsafe extern "C" fn writer(log: *mut ngx_log_t, level: ngx_uint_t, buf: *mut u_char, len: usize) {
    // SAFETY: nginx calls the writer with its log and the formatted line;
    // wdata is the Tap we installed with this writer.
    let (Some(l), Some(tap)) = (unsafe { log.as_mut() }, unsafe { (*log).wdata.cast::<Tap>().as_ref() }) else {
        return;
    };
    let line: &[u8] = if buf.is_null() {
        &[]
    } else {
        unsafe { core::slice::from_raw_parts(buf, len) }
    };

    if level <= NGX_LOG_ERR as ngx_uint_t && !BUSY.with(Cell::get) {
        suspended(|| crate::guard((), || capture(l, line)));
    }

    if level > tap.saved_level {
        return;
    }
    match tap.saved_writer {
        Some(w) => {
            let mut copy = *l;
            copy.writer = tap.saved_writer;
            copy.wdata = tap.saved_wdata;
            copy.log_level = tap.saved_level;
            // SAFETY: the writer nginx had configured, with its own data.
            unsafe { w(&mut copy, level, buf, len) };
        }
        None => {
            // SAFETY: ngx_cached_time is always valid in a running nginx.
            let now = unsafe { (*ngx::ffi::ngx_cached_time).sec };
            if now == l.disk_full_time {
                return;
            }
            // SAFETY: file is the log's open file; buf/len are nginx's line.
            let n = unsafe { libc::write((*l.file).fd, buf.cast(), len) };
            if n == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSPC) {
                l.disk_full_time = now;
            }
        }
    }
}

/// Records an upstream error line for the current attempt of the request
/// nginx is working on.
fn capture(l: &ngx_log_t, line: &[u8]) {
    let action: &[u8] = if l.action.is_null() {
        &[]
    } else {
        // SAFETY: log->action is always a NUL-terminated static string.
        unsafe { CStr::from_ptr(l.action) }.to_bytes()
    };
    let msg = extract_message(line, Some(action));
    let parsed = parse_message(msg);
    let upstream_phase = !matches!(Phase::from_action(action), Phase::Other);
    if !upstream_phase && !matches!(parsed.kind, MessageKind::ResolveFailed | MessageKind::NoLiveUpstreams) {
        return;
    }
    // SAFETY: the tap is only armed on HTTP connection logs, whose data is
    // an ngx_http_log_ctx_t (ngx_http_init_connection, HTTP/2 streams).
    let Some(lctx) = (unsafe { l.data.cast::<ngx_http_log_ctx_t>().as_ref() }) else {
        return;
    };
    let r = if lctx.current_request.is_null() {
        lctx.request
    } else {
        lctx.current_request
    };
    let Some(ctx) = ctx::get(r) else { return };
    let current = ctx.current_index();
    let Some(recs) = ctx.records() else { return };
    let Some(idx) = current else {
        // Before any attempt: only the resolver's failure matters.
        if recs.pre.is_none() && parsed.kind == MessageKind::ResolveFailed {
            recs.pre = Some(parsed);
            keep_detail(recs, BEFORE_ANY, msg);
        }
        return;
    };
    let Some(a) = recs.attempts.get_mut(idx) else { return };
    match a.obs.message {
        Some(m) if m.kind != MessageKind::Other || parsed.kind == MessageKind::Other => return,
        _ => {}
    }
    a.obs.message = Some(parsed);
    a.recorded = true;
    recs.observed(idx);
    keep_detail(recs, idx, msg);
    recs.mark_reused(idx);
}

fn keep_detail(recs: &mut Records, idx: usize, msg: &[u8]) {
    let n = msg.len().min(DETAIL_MAX);
    recs.detail[..n].copy_from_slice(&msg[..n]);
    recs.detail_len = n;
    recs.detail_idx = idx;
}

/// Precontent phase: arms the tap before the content handler runs, in
/// locations that have one (proxy_pass and the other *_pass set it), so
/// that failures before any balancer call (the resolver) and attempts no
/// wrapper sees (`proxy_pass http://$var` to an address) are heard too.
pub unsafe extern "C" fn precontent_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::guard((), || {
        // SAFETY: nginx runs phase handlers with a live request.
        let Some(req) = (unsafe { r.as_ref() }) else { return };
        let has_handler = NgxHttpCoreModule::location_conf(req).is_some_and(|clcf| clcf.handler.is_some());
        if !has_handler || !crate::enabled_for(r) {
            return;
        }
        if let Some(ctx) = ctx::get_or_create(r) {
            // SAFETY: the request's live connection log; the ctx lives in its pool.
            unsafe { ctx.tap.arm((*req.connection).log) };
        }
    });
    NGX_DECLINED as ngx_int_t
}
