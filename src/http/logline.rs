//! The log phase: a failed request's counters and its one enriched
//! error-log line, both from the request's summary.

use ngx::ffi::{ngx_http_request_t, ngx_int_t, ngx_log_t, ngx_uint_t, NGX_DECLINED};
use ngx::http::HttpModuleMainConf;
use upstream_cause_core::render::LogLine;
use upstream_cause_core::{At, Summary};

use super::conf::LocConf;
use super::ctx::{self, Ctx, Upstream};
use super::Module;

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
    } else if let Some(mcf) = Module::main_conf(r) {
        crate::guard((), || super::count::successes(r, mcf));
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
    let status = u16::try_from(r.headers_out.status).unwrap_or(0);
    let peer = |at| match at {
        At::Attempt(idx) => ctx::peer_label(ctx::states(r).get(idx)),
        At::BeforeAny => b"-",
    };
    if let Some(line) = LogLine::of(s, ctx.observed(), status, peer) {
        crate::tap::write_line(log, level, &line);
    }
}
