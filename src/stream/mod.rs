//! ngx_stream_upstream_cause_module: the same answers for nginx's TCP and
//! UDP proxy (`stream {}`).
//!
//! A module of its own, in its own `.so` (the `stream/` package builds it),
//! since nginx is often built with a dynamic stream module (Debian's
//! `libnginx-mod-stream`): it loads after that one. It shares the core,
//! the tap, the zone and the directives' parsing with the HTTP module.
//!
//! The `ngx` crate wraps only HTTP: the few stream types needed are read
//! here through nginx-sys, each access in a small `unsafe` with its reason.

use core::ffi::{c_char, c_void};
use core::ptr;

use ngx::core::{Status, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_conf_t, ngx_int_t, ngx_module_t, ngx_stream_add_variable, ngx_stream_conf_ctx_t, ngx_stream_core_main_conf_t,
    ngx_stream_core_module, ngx_stream_core_srv_conf_t, ngx_stream_handler_pt, ngx_stream_module_t,
    ngx_stream_phases_NGX_STREAM_LOG_PHASE as NGX_STREAM_LOG_PHASE, ngx_stream_session_t, ngx_uint_t,
    NGX_STREAM_MODULE,
};

mod conf;
mod report;
mod saturation;
mod session;
mod wrap;

use crate::{guard, tap};
use conf::{MainConf, SrvConf};

static CTX: ngx_stream_module_t = ngx_stream_module_t {
    preconfiguration: Some(preconfiguration),
    postconfiguration: Some(postconfiguration),
    create_main_conf: Some(create_main_conf),
    init_main_conf: None,
    create_srv_conf: Some(create_srv_conf),
    merge_srv_conf: Some(merge_srv_conf),
};

// Unmangled: the table nginx's own build generates names it.
#[no_mangle]
#[used]
#[allow(non_upper_case_globals)]
pub static mut ngx_stream_upstream_cause_module: ngx_module_t = ngx_module_t {
    ctx: ptr::addr_of!(CTX).cast_mut().cast(),
    // SAFETY: a static array of commands, terminated by an empty one.
    commands: unsafe { ptr::addr_of_mut!(conf::COMMANDS[0]) },
    type_: NGX_STREAM_MODULE as ngx_uint_t,
    ..ngx_module_t::default()
};

/// The module's index in a session's `ctx` and the conf arrays.
fn ctx_index() -> usize {
    // SAFETY: the module static is only written by nginx while loading.
    unsafe { (*ptr::addr_of!(ngx_stream_upstream_cause_module)).ctx_index }
}

/// `NGX_STREAM_MAIN_CONF_OFFSET` and `NGX_STREAM_SRV_CONF_OFFSET`: where a
/// directive's configuration is in the block's context (C macros, not
/// in the bindings).
const MAIN_CONF_OFFSET: usize = core::mem::offset_of!(ngx_stream_conf_ctx_t, main_conf);
const SRV_CONF_OFFSET: usize = core::mem::offset_of!(ngx_stream_conf_ctx_t, srv_conf);

/// Module `index`'s configuration in a stream block's context (`conf` is
/// its `main_conf` or `srv_conf` array).
///
/// # Safety
/// `conf` is an array of nginx's stream configuration with an entry for
/// every stream module, whose entry `index` is a `T`.
unsafe fn conf_of<'a, T>(conf: *mut *mut c_void, index: usize) -> Option<&'a mut T> {
    // SAFETY: see the function's contract.
    unsafe {
        conf.as_ref()
            .map(|_| *conf.add(index))
            .and_then(|p| p.cast::<T>().as_mut())
    }
}

/// The stream block's (or the server's, during a server's merge)
/// configuration context.
fn conf_ctx(cf: &ngx_conf_t) -> Option<&ngx_stream_conf_ctx_t> {
    // SAFETY: in the stream module's callbacks cf->ctx is a stream context.
    unsafe { cf.ctx.cast::<ngx_stream_conf_ctx_t>().as_ref() }
}

/// The main configuration a session runs with.
fn session_main_conf(s: &ngx_stream_session_t) -> Option<&'static MainConf> {
    // SAFETY: a live session's main_conf has our MainConf at our index.
    unsafe { conf_of::<MainConf>(s.main_conf, ctx_index()).map(|m| &*m) }
}

/// The server configuration a session runs with.
fn session_srv_conf(s: &ngx_stream_session_t) -> Option<&'static SrvConf> {
    // SAFETY: a live session's srv_conf has our SrvConf at our index.
    unsafe { conf_of::<SrvConf>(s.srv_conf, ctx_index()).map(|c| &*c) }
}

/// Whether the module is on where the session is.
fn enabled(s: &ngx_stream_session_t) -> bool {
    session_srv_conf(s).is_some_and(SrvConf::enabled)
}

unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    guard(Status::NGX_ERROR.into(), || {
        crate::vars::add_variables!(cf, report::VARS, ngx_stream_add_variable)
    })
}

unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    guard(Status::NGX_ERROR.into(), || {
        // SAFETY: nginx's cf during the stream block.
        let Some(cf) = (unsafe { cf.as_mut() }) else {
            return Status::NGX_ERROR.into();
        };
        // After the upstream module's init_main_conf set every peer.init.
        wrap::wrap_upstreams(cf);

        let Some(ctx) = conf_ctx(cf) else {
            return Status::NGX_ERROR.into();
        };
        // SAFETY: the core module's entry of the main configuration.
        let Some(cmcf) =
            (unsafe { conf_of::<ngx_stream_core_main_conf_t>(ctx.main_conf, ngx_stream_core_module.ctx_index) })
        else {
            return Status::NGX_ERROR.into();
        };
        let handlers = &mut cmcf.phases[NGX_STREAM_LOG_PHASE as usize].handlers;
        let handler: ngx_stream_handler_pt = Some(report::log_handler);
        if crate::conf::first_handler(handlers, handler).is_err() {
            return Status::NGX_ERROR.into();
        }
        Status::NGX_OK.into()
    })
}

/// A configuration of ours in the cycle's pool (dropped with it).
fn alloc_conf<T: Default>(cf: *mut ngx_conf_t) -> *mut c_void {
    guard(ptr::null_mut(), || {
        // SAFETY: nginx's cf, whose pool lives as long as the cycle.
        let Some(cf) = (unsafe { cf.as_ref() }) else {
            return ptr::null_mut();
        };
        // SAFETY: as above.
        let pool = unsafe { ngx::core::Pool::from_ngx_pool(cf.pool) };
        pool.allocate(T::default()).cast()
    })
}

unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    alloc_conf::<MainConf>(cf)
}

unsafe extern "C" fn create_srv_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    alloc_conf::<SrvConf>(cf)
}

unsafe extern "C" fn merge_srv_conf(cf: *mut ngx_conf_t, prev: *mut c_void, conf: *mut c_void) -> *mut c_char {
    guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx passes its cf, our parent's and our own SrvConf.
        let (Some(cf), Some(prev), Some(conf)) = (
            unsafe { cf.as_mut() },
            unsafe { prev.cast::<SrvConf>().as_ref() },
            unsafe { conf.cast::<SrvConf>().as_mut() },
        ) else {
            return NGX_CONF_ERROR;
        };
        conf.merge(prev);
        if conf.enabled() && tap_server(cf).is_err() {
            return NGX_CONF_ERROR;
        }
        NGX_CONF_OK
    })
}

/// At merge time of a `server` where the module is on: gives it a copy of
/// its error log with the tap's writer in front (see `crate::tap`); nginx
/// sets it on each session's connection when the session gets its server.
fn tap_server(cf: &mut ngx_conf_t) -> Result<(), ()> {
    // During a server's merge, cf->ctx is the server's context.
    let Some(ctx) = conf_ctx(cf) else { return Ok(()) };
    // SAFETY: the core module's entry of the server's configuration.
    let Some(cscf) = (unsafe { conf_of::<ngx_stream_core_srv_conf_t>(ctx.srv_conf, ngx_stream_core_module.ctx_index) })
    else {
        return Ok(());
    };
    // SAFETY: after the core module's merge, error_log is a live log of
    // the cycle being configured.
    let Some(orig) = (unsafe { cscf.error_log.as_ref() }) else {
        return Ok(());
    };
    // SAFETY: the cycle's pool, which outlives every session of the cycle.
    let pool = unsafe { ngx::core::Pool::from_ngx_pool(cf.pool) };
    if let Some(log) = tap::tap(&pool, orig, session::line)? {
        cscf.error_log = log;
    }
    Ok(())
}
