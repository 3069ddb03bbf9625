//! The log phase: a failed request's counters and its one enriched
//! error-log line, both from the request's summary.

use ngx::ffi::{ngx_http_request_t, ngx_int_t, ngx_log_t, ngx_uint_t, NGX_DECLINED};
use ngx::http::HttpModuleMainConf;
use upstream_cause_core::render::{render_log_line, FixedBuf, LogLine};
use upstream_cause_core::{At, Summary};

use crate::conf::LocConf;
use crate::ctx::{self, Ctx, Upstream};
use crate::Module;

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
        crate::zone::count(r, mcf, &summary, ctx.observed(), states);
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
    let mut raw = [0u8; LINE_MAX];
    let mut out = FixedBuf::new(&mut raw);
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
    // nginx appends " while <action>" before its ", client: ..." suffix;
    // our line stands alone, so no action while it is written.
    let action = core::mem::replace(&mut log.action, core::ptr::null_mut());
    let raw: *mut ngx_log_t = &mut *log;
    // Our own line: the tap does not record it.
    // SAFETY: the request's live connection log.
    crate::tap::suspended(|| unsafe { ngx::log::log_error(level, raw, 0, out.as_bytes()) });
    log.action = action;
}
