//! The log tap: the exact text (errno, phase) of each attempt's failure.
//!
//! nginx writes every upstream error line of a request or a session on one
//! object, its client connection's log (the peer connection's `c->log` is
//! set to it on each attempt). The tap puts its own writer on that log,
//! hands each error line to the module's `hear` function, and forwards
//! every line exactly as nginx would have written it.
//!
//! It costs a request nothing: at configuration time, a module gives each
//! place where it is on (an HTTP location) a log of its own, a copy of the
//! one it had with the tap's writer in front ([`tap`]). nginx copies that
//! log onto the connection's each time a request enters the place
//! (`ngx_set_connection_log`), so the tap is there before nginx's upstream
//! code runs, whatever it does first (resolve, pick a peer), and goes when
//! the request moves to where the module is off.
//!
//! A module's own lines about what it heard go through nginx's logger
//! with the tap [`suspended`], so that they are not heard again.

use core::cell::Cell;
use core::ffi::c_void;

use ngx::core::Pool;
use ngx::ffi::{ngx_log_t, ngx_log_writer_pt, ngx_uint_t, u_char, NGX_LOG_DEBUG_CONNECTION, NGX_LOG_ERR};

/// What a module does with an error line heard on a tapped log.
pub type Hear = fn(&ngx_log_t, &[u8]);

/// What the tap replaced in a log, and who hears its lines.
#[derive(Clone, Copy)]
struct Saved {
    writer: ngx_log_writer_pt,
    wdata: *mut c_void,
    level: ngx_uint_t,
    hear: Hear,
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

/// The action nginx has set on a log (`while ...`), empty if none.
pub fn action(log: &ngx_log_t) -> &[u8] {
    if log.action.is_null() {
        return &[];
    }
    // SAFETY: log->action is always a NUL-terminated static string.
    unsafe { core::ffi::CStr::from_ptr(log.action) }.to_bytes()
}

/// Room for the enriched line: nginx adds its prefix before it and its
/// handler's suffix after it, and cuts the whole at NGX_MAX_ERROR_STR
/// (2048 bytes).
const LINE_MAX: usize = 1536;

/// Renders the enriched line `l` and writes it on `log` ([`write_own`]).
pub fn write_line(log: &mut ngx_log_t, level: ngx_uint_t, l: &upstream_cause_core::LogLine<'_>) {
    let mut buf = [0u8; LINE_MAX];
    let mut out = upstream_cause_core::render::FixedBuf::new(&mut buf);
    upstream_cause_core::render::render_log_line(&mut out, l);
    let len = out.len();
    write_own(log, level, &buf[..len]);
}

/// Writes a module's own line through nginx's logger on `log` at `level`:
/// nginx's prefix, the log's handler's suffix (HTTP's `client:`,
/// `request:`..., stream's `client:`, `server:`, `upstream:` and byte
/// counts), every log of the chain whose level admits it. With no action
/// (the line stands alone: nginx would append " while ACTION") and the tap
/// suspended (it is not one of nginx's).
pub fn write_own(log: &mut ngx_log_t, level: ngx_uint_t, line: &[u8]) {
    let action = core::mem::replace(&mut log.action, core::ptr::null_mut());
    let head: *mut ngx_log_t = &mut *log;
    // SAFETY: a live connection log and its chain; nothing else refers to
    // it during the call.
    suspended(|| unsafe { ngx::log::log_error(level, head, 0, line) });
    log.action = action;
}

const OUR_WRITER: unsafe extern "C" fn(*mut ngx_log_t, ngx_uint_t, *mut u_char, usize) = writer;

/// Whether the log's writer is the tap's. Function addresses are compared
/// as nginx's C does; the crate is one codegen unit, so ours is unique.
#[inline]
fn is_ours(w: ngx_log_writer_pt) -> bool {
    w.map(|f| f as usize) == Some(OUR_WRITER as *const () as usize)
}

/// The level a tapped log formats lines at: the one configured, or error
/// if that is higher (crit, alert, emerg), as upstream failures are
/// logged at error.
fn tapped_level(level: ngx_uint_t) -> ngx_uint_t {
    level.max(NGX_LOG_ERR as ngx_uint_t)
}

/// A copy of `orig` with the tap's writer in front, whose error lines
/// go to `hear`, allocated from `pool` (the cycle's); `None` when `orig`
/// is tapped already. `Err` when the pool is out of memory.
pub fn tap(pool: &Pool, orig: &ngx_log_t, hear: Hear) -> Result<Option<*mut ngx_log_t>, ()> {
    if is_ours(orig.writer) {
        return Ok(None);
    }
    let saved = pool
        .alloc(core::mem::size_of::<Option<Saved>>())
        .cast::<Option<Saved>>();
    let log = pool.alloc(core::mem::size_of::<ngx_log_t>()).cast::<ngx_log_t>();
    if saved.is_null() || log.is_null() {
        return Err(());
    }
    let copy = ngx_log_t {
        writer: Some(OUR_WRITER),
        wdata: saved.cast(),
        log_level: tapped_level(orig.log_level),
        ..*orig
    };
    // SAFETY: fresh, aligned pool memory of the right sizes.
    unsafe {
        saved.write(Some(Saved {
            writer: orig.writer,
            wdata: orig.wdata,
            level: orig.log_level,
            hear,
        }));
        log.write(copy);
    }
    Ok(Some(log))
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
        suspended(|| crate::guard((), || (tap.hear)(l, line)));
    }

    // nginx calls a log's writer when the line's level passes the log's
    // (ours may be raised to error) or the connection is a
    // `debug_connection` one: forward it when the level passes the
    // original's.
    if level > tap.level && l.log_level & NGX_LOG_DEBUG_CONNECTION as ngx_uint_t == 0 {
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
        // SAFETY: the log nginx called us with.
        None => unsafe { write_file(log, line) },
    }
}

/// What nginx does with a line for a log without a writer: skipped for
/// the second after the disk was found full, else written to the log's
/// file, noting a full disk.
///
/// # Safety
/// `log` is a live log with an open file; no reference to it is held.
unsafe fn write_file(log: *mut ngx_log_t, line: &[u8]) {
    // SAFETY: ngx_cached_time is always valid in a running nginx.
    let now = unsafe { (*ngx::ffi::ngx_cached_time).sec };
    // SAFETY: see the function's contract.
    if now == unsafe { (*log).disk_full_time } {
        return;
    }
    // SAFETY: file is the log's open file; line is the formatted line.
    let n = unsafe { libc::write((*(*log).file).fd, line.as_ptr().cast(), line.len()) };
    if n == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSPC) {
        // SAFETY: see the function's contract.
        unsafe { (*log).disk_full_time = now };
    }
}
