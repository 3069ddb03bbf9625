//! The one enriched error-log line per failed request (log phase).

use ngx::ffi::{ngx_http_request_t, ngx_int_t, ngx_uint_t, NGX_DECLINED};
use ngx::http::HttpModuleLocationConf;
use upstream_cause_core::render::{render_log_line, Entry, FixedBuf, LogLine};

use crate::conf::LOG_OFF;
use crate::ctx::BEFORE_ANY;
use crate::{ctx, tap, zone, Module};

/// Room for the line before nginx appends ", client: ..." (the whole line
/// is cut by nginx at NGX_MAX_ERROR_STR, 2048 bytes).
const LINE_MAX: usize = 1536;

pub unsafe extern "C" fn log_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx runs log-phase handlers with a live request.
    let Some(req) = (unsafe { r.as_ref() }) else {
        return NGX_DECLINED as ngx_int_t;
    };
    // Not proxied, off here, or nothing failed: nothing to report.
    if req.upstream_states.is_null() {
        return NGX_DECLINED as ngx_int_t;
    }
    let Some(lcf) = Module::location_conf(req).filter(|l| l.enabled()) else {
        return NGX_DECLINED as ngx_int_t;
    };
    let ctx = ctx::view(req);
    if !ctx.quiet() {
        crate::guard((), || report(req, lcf, &ctx));
    }
    NGX_DECLINED as ngx_int_t
}

/// Counts the request's failures and writes its enriched line.
#[cold]
#[inline(never)]
fn report(req: &ngx_http_request_t, lcf: &crate::conf::LocConf, ctx: &ctx::Ctx) {
    zone::record(req, ctx);
    if lcf.log_level == LOG_OFF {
        return;
    }
    let Some((cause, idx)) = ctx.final_cause() else { return };
    if !cause.is_gateway_failure() {
        return;
    }
    // SAFETY: r's connection and its log are live during the log phase.
    let log = unsafe { (*req.connection).log };
    let level: ngx_uint_t = lcf.log_level;
    // SAFETY: the live log.
    if unsafe { (*log).log_level } < level {
        return;
    }
    let states = ctx.states();
    let mut ebuf = [Entry::Separator; 64];
    let entries = ctx.entries(&mut ebuf);
    // A failure before any attempt (the resolver) made no attempt.
    let attempts = if idx == BEFORE_ANY {
        0
    } else {
        entries.iter().filter(|e| matches!(e, Entry::Attempt(_))).count()
    };
    let peer = states
        .get(idx)
        // SAFETY: a state's peer is null or an ngx_str_t valid for the request.
        .and_then(|s| unsafe { s.peer.as_ref() })
        .map_or(&b"-"[..], |p| p.as_bytes());
    let mut raw = [0u8; LINE_MAX];
    let mut out = FixedBuf::new(&mut raw);
    render_log_line(
        &mut out,
        &LogLine {
            cause,
            status: u16::try_from(req.headers_out.status).unwrap_or(0),
            attempts,
            peer,
            entries,
            detail: ctx.detail_of(idx),
            message: ctx.message_of(idx),
        },
    );
    // nginx appends " while <action>" before its ", client: ..." suffix;
    // our line stands alone, so no action while it is written.
    // SAFETY: the live log; action is restored right after.
    unsafe {
        let action = (*log).action;
        (*log).action = core::ptr::null_mut();
        tap::suspended(|| ngx::log::log_error(level, log, 0, out.as_bytes()));
        (*log).action = action;
    }
}
