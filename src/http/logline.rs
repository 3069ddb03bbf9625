//! The log phase: a failed request's counters and its one enriched
//! error-log line, both from the request's summary.

use ngx::ffi::{
    ngx_cached_err_log_time, ngx_http_request_t, ngx_int_t, ngx_log_t, ngx_pid, ngx_uint_t, NGX_DECLINED,
    NGX_LOG_DEBUG, NGX_MAX_ERROR_STR,
};
use ngx::http::HttpModuleMainConf;
use upstream_cause_core::render::{render_log_line, render_log_prefix, FixedBuf, LogLine};
use upstream_cause_core::{At, Summary};

use super::conf::LocConf;
use super::ctx::{self, Ctx, Upstream};
use super::Module;

/// Room for the line before nginx appends ", client: ..." (the whole line
/// is cut by nginx at NGX_MAX_ERROR_STR, 2048 bytes).
const LINE_MAX: usize = 1536;

pub unsafe extern "C" fn log_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx runs log-phase handlers with a live request.
    let Some(r) = (unsafe { r.as_ref() }) else {
        return NGX_DECLINED as ngx_int_t;
    };
    // Not proxied, off here, or nothing failed: nothing to report.
    if r.upstream_states.is_null() {
        return NGX_DECLINED as ngx_int_t;
    }
    let Some(lcf) = LocConf::of(r).filter(|l| l.enabled()) else {
        return NGX_DECLINED as ngx_int_t;
    };
    if !ctx::quiet(r) {
        crate::guard((), || report(r, lcf));
    }
    NGX_DECLINED as ngx_int_t
}

/// Counts the request's failures and writes its enriched line.
#[cold]
#[inline(never)]
fn report(r: &ngx_http_request_t, lcf: &LocConf) {
    let ctx = ctx::view(r);
    let summary = ctx.summary(r);
    let states = ctx::states(r);
    if let Some(mcf) = Module::main_conf(r) {
        super::count::count(r, mcf, &summary, ctx.observed(), states);
    }
    let Some(level) = lcf.log_level() else { return };
    // SAFETY: r's connection and its log are live during the log phase.
    let Some(log) = (unsafe { (*r.connection).log.as_mut() }) else {
        return;
    };
    if log.log_level < level {
        return;
    }
    write_line(r, log, level, &ctx, &summary);
}

fn write_line(r: &ngx_http_request_t, log: &mut ngx_log_t, level: ngx_uint_t, ctx: &Ctx, s: &Summary<Upstream>) {
    let Some(outcome) = s.outcome().filter(|o| o.cause.is_gateway_failure()) else {
        return;
    };
    let peer = match outcome.at {
        At::Attempt(idx) => ctx::peer_label(ctx::states(r).get(idx)),
        At::BeforeAny => b"-",
    };
    let observed = ctx.observed();
    // The whole line in one buffer, as ngx_log_error_core makes its own:
    // nginx's prefix, our text, the log handler's ", client: ..." suffix.
    // SAFETY: the worker's one thread; nothing this writes with calls
    // back into write_line (see LineBuf).
    let raw = unsafe { &mut *LINE.0.get() };
    let mut len = {
        let mut out = FixedBuf::new(raw);
        // SAFETY: nginx's cached time string (a volatile global, read as
        // nginx reads it), valid in a running nginx.
        let time = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(ngx_cached_err_log_time)) };
        // (it points at one of nginx's time strings, which stay)
        let time = time.as_bytes();
        // SAFETY: the process's pid, set at start.
        let pid = i64::from(unsafe { ngx_pid });
        // (ngx_atomic_uint_t is as wide as the platform's word)
        #[allow(clippy::unnecessary_cast)]
        let connection = log.connection as u64;
        render_log_prefix(&mut out, time, level, pid, log_tid(), connection);
        out.len()
    };
    len += {
        let end = raw.len().min(len + LINE_MAX);
        let mut out = FixedBuf::new(&mut raw[len..end]);
        render_log_line(
            &mut out,
            &LogLine {
                cause: outcome.cause,
                status: u16::try_from(r.headers_out.status).unwrap_or(0),
                attempts: s.attempts(),
                peer,
                entries: s.entries(),
                detail: observed.map_or(&[], |o| o.detail(outcome.at)),
                message: observed.and_then(|o| o.message(outcome.at)),
            },
        );
        out.len()
    };
    if let Some(handler) = log.handler.filter(|_| level != NGX_LOG_DEBUG as ngx_uint_t) {
        // nginx's handler appends " while <action>" before ", client: ...";
        // our line stands alone, so no action while it is written.
        let action = core::mem::replace(&mut log.action, core::ptr::null_mut());
        // Its allocations, if any, may log: not ours to hear.
        // SAFETY: the log's own handler, called as ngx_log_error_core
        // calls it, with the room left in the buffer.
        let at = raw[len..].as_mut_ptr();
        let end = crate::tap::suspended(|| unsafe { handler(log, at, raw.len() - len) });
        log.action = action;
        len = (end as usize).saturating_sub(raw.as_ptr() as usize).min(raw.len());
    }
    len = len.min(raw.len() - 1);
    raw[len] = b'\n';
    // SAFETY: the request's live connection log and its chain.
    unsafe { crate::tap::write_line(log, level, &mut raw[..=len]) };
}

/// The buffer a line is made in: the worker's one (as nginx's is on its
/// stack, but not zeroed for each line). write_line is its only user, and
/// nothing it calls while the buffer is borrowed (the log handler, the
/// writers) calls write_line again.
struct LineBuf(core::cell::UnsafeCell<[u8; NGX_MAX_ERROR_STR as usize]>);

// SAFETY: used only by the worker's one thread, in write_line.
unsafe impl Sync for LineBuf {}

static LINE: LineBuf = LineBuf(core::cell::UnsafeCell::new([0; NGX_MAX_ERROR_STR as usize]));

/// The thread id nginx writes after the pid: the thread's, in a build with
/// threads (`ngx_thread_tid`), else 0.
fn log_tid() -> i64 {
    #[cfg(ngx_feature = "threads")]
    {
        // SAFETY: gettid has no preconditions.
        i64::from(unsafe { libc::gettid() })
    }
    #[cfg(not(ngx_feature = "threads"))]
    {
        0
    }
}
