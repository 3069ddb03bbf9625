//! The log tap: the exact text (errno, phase) of each attempt's failure.
//!
//! nginx writes every upstream error line of a request on one object,
//! `r->connection->log` (the peer connection's `c->log` is set to it on each
//! attempt). The tap puts its own writer on that log, records the upstream
//! lines for the request's current attempt, and forwards every line exactly
//! as nginx would have written it.
//!
//! It is armed right before the content handler of a `*_pass` location runs
//! (so that failures before any balancer call, the resolver's, and attempts
//! no balancer wrapper sees, `proxy_pass http://$var` to an address, are
//! heard too) and again in `peer.get`. It is never disarmed: nginx itself
//! puts the location's writer back on the log at the next location change
//! (`ngx_set_connection_log`), and until then the tap forwards every line
//! unchanged. What it replaced (writer, its data, level) is kept in a small
//! table shared by all requests of the worker, one entry per distinct
//! triple, so arming costs no allocation.

use core::cell::Cell;
use core::ffi::{c_void, CStr};

use ngx::ffi::{
    ngx_conf_t, ngx_http_handler_pt, ngx_http_log_ctx_t, ngx_http_request_t, ngx_int_t, ngx_log_t, ngx_log_writer_pt,
    ngx_uint_t, u_char, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_LOG_ERR, NGX_LOG_WARN,
};
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule};
use upstream_cause_core::text::{extract_message, parse_message, MessageKind, Phase};

use crate::ctx::{self, Records, BEFORE_ANY, DETAIL_MAX};
use crate::slots::{same_fn, wrap, wrappers, Slots};

/// What the tap replaced on a log.
#[derive(Clone, Copy)]
struct Saved {
    writer: ngx_log_writer_pt,
    wdata: *mut c_void,
    level: ngx_uint_t,
}

/// Distinct `Saved` triples (a configuration has a few: one per syslog or
/// memory target and level; plain files have no writer). Logs point at
/// their entry with `wdata`.
static SAVED: Slots<Saved, 64> = Slots::new();

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
#[inline]
pub fn is_ours(w: ngx_log_writer_pt) -> bool {
    w.map(|f| f as usize) == Some(OUR_WRITER as *const () as usize)
}

/// Puts the tap on `log` unless it is there already.
///
/// # Safety
/// `log` is the live connection log of an HTTP request.
#[inline]
pub unsafe fn arm(log: *mut ngx_log_t) {
    // SAFETY: per the contract, a live log.
    let Some(l) = (unsafe { log.as_mut() }) else { return };
    if is_ours(l.writer) {
        return;
    }
    let saved = Saved {
        writer: l.writer,
        wdata: l.wdata,
        level: l.log_level,
    };
    let same =
        |a: &Saved, b: &Saved| a.wdata == b.wdata && a.level == b.level && same_fn(a.writer, b.writer, |f| f as usize);
    let Some(i) = SAVED.find_or_add(saved, same) else {
        return; // no room: this request is heard through its flags only
    };
    l.writer = Some(OUR_WRITER);
    l.wdata = SAVED.slot_ptr(i).cast_mut().cast();
    // Lines must be formatted to be seen, even under `error_log ... crit`.
    if l.log_level < NGX_LOG_ERR as ngx_uint_t {
        l.log_level = NGX_LOG_ERR as ngx_uint_t;
    }
}

unsafe extern "C" fn writer(log: *mut ngx_log_t, level: ngx_uint_t, buf: *mut u_char, len: usize) {
    // SAFETY: nginx calls the writer with its log and the formatted line;
    // wdata is the table entry we installed with this writer. The log is
    // only read through `l` (capture can log again, on this same log: a
    // pool allocation that fails), and written through `log` below.
    let (Some(l), Some(tap)) = (unsafe { log.as_ref() }, unsafe {
        (*log).wdata.cast::<Option<Saved>>().as_ref().and_then(Option::as_ref)
    }) else {
        return;
    };
    let line: &[u8] = if buf.is_null() {
        &[]
    } else {
        // SAFETY: nginx's formatted line, len bytes at buf.
        unsafe { core::slice::from_raw_parts(buf, len) }
    };

    if level <= NGX_LOG_ERR as ngx_uint_t && !BUSY.with(Cell::get) {
        suspended(|| crate::guard((), || capture(l, line)));
    }

    if level > tap.level {
        return;
    }
    match tap.writer {
        Some(w) => {
            let mut copy = *l;
            copy.writer = tap.writer;
            copy.wdata = tap.wdata;
            copy.log_level = tap.level;
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
                // SAFETY: the live log nginx called us with; no reference
                // to it is held across this write.
                unsafe { (*log).disk_full_time = now };
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
    // No request (between keepalive requests): nothing to attribute to.
    if lctx.request.is_null() {
        return;
    }
    let r = if lctx.current_request.is_null() {
        lctx.request
    } else {
        lctx.current_request
    };
    // SAFETY: with `request` set, both are live requests of the
    // connection, for the whole of this log call.
    let Some(req) = (unsafe { r.as_ref() }) else { return };
    if req.upstream.is_null() || !crate::enabled_for(r) {
        return;
    }
    // None also when the context is held by the code that is logging.
    let Some(mut ctx) = ctx::get_or_create(req) else { return };
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

/// The content handlers of the locations we arm the tap for.
static HANDLERS: Slots<ngx_http_handler_pt> = Slots::new();
type HandlerFn = unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t;
static CONTENT_WRAPPERS: [HandlerFn; crate::slots::N] = wrappers!(content_handler);

fn handler_addr(f: HandlerFn) -> usize {
    f as usize
}

/// At merge time of a location where `upstream_cause` is on: puts the tap
/// in front of the location's content handler (proxy_pass and the other
/// `*_pass` set one), so the tap is on the log before nginx's upstream
/// code runs, whatever it does first (resolve, pick a peer).
pub fn wrap_content_handler(cf: *mut ngx_conf_t) {
    // SAFETY: during merge, cf->ctx's loc_conf is the location being merged.
    let Some(clcf) = NgxHttpCoreModule::location_conf_mut(unsafe { &*cf }) else {
        return;
    };
    match wrap(&HANDLERS, clcf.handler, &CONTENT_WRAPPERS, handler_addr) {
        Ok(Some(w)) => clcf.handler = Some(w),
        Ok(None) => {}
        Err(()) => {
            ngx::ngx_conf_log_error!(
                NGX_LOG_WARN,
                cf,
                "upstream_cause: too many kinds of content handlers, resolver failures in location \"{}\" are not heard",
                String::from_utf8_lossy(clcf.name.as_bytes())
            );
        }
    }
}

unsafe extern "C" fn content_handler<const I: usize>(r: *mut ngx_http_request_t) -> ngx_int_t {
    let Some(Some(orig)) = HANDLERS.get(I) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    crate::guard((), || {
        // SAFETY: nginx calls content handlers with a live request.
        if let Some(req) = unsafe { r.as_ref() } {
            // SAFETY: the request's live connection log.
            unsafe { arm((*req.connection).log) };
        }
    });
    // SAFETY: the location's own content handler, called as nginx would.
    unsafe { orig(r) }
}
