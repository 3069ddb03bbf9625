//! The log tap: the exact text (errno, phase) of each attempt's failure.
//!
//! nginx writes every upstream error line of a request on one object,
//! `r->connection->log` (the peer connection's `c->log` is set to it on each
//! attempt). The tap puts its own writer on that log, hands each error line
//! to `crate::observe::line`, and forwards every line exactly as nginx would
//! have written it.
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
use core::ffi::c_void;

use ngx::ffi::{ngx_log_t, ngx_log_writer_pt, ngx_uint_t, u_char, NGX_LOG_ERR};

use crate::wrap::{same_fn, Slots};

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

/// Puts the tap on `l`, the connection log of an HTTP request, unless it
/// is there already.
#[inline]
pub fn arm(l: &mut ngx_log_t) {
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
    // only read through `l` (observing it can log again, on this same log: a
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
        suspended(|| crate::guard((), || crate::observe::line(l, line)));
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
