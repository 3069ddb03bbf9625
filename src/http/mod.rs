//! ngx_http_upstream_cause_module: the HTTP module.
//!
//! This file holds only the module statics, the `HttpModule` impl and its
//! initialisation; each concern has its own file.

use core::ptr;

use ngx::core::Status;
use ngx::ffi::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_handler_pt, ngx_http_module_t,
    ngx_http_phases_NGX_HTTP_LOG_PHASE as NGX_HTTP_LOG_PHASE, ngx_int_t, ngx_module_t, ngx_uint_t, NGX_HTTP_MODULE,
};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, Merge, NgxHttpCoreModule};

mod conf;
mod count;
mod ctx;
mod directives;
mod header;
mod logline;
mod metrics;
mod observe;
mod saturation;
mod status;
mod vars;
mod wrap;

use crate::{guard, tap, trace};
use conf::{LocConf, MainConf};

pub struct Module;

static NGX_HTTP_UPSTREAM_CAUSE_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(Module::preconfiguration),
    postconfiguration: Some(Module::postconfiguration),
    create_main_conf: Some(Module::create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(Module::create_loc_conf),
    merge_loc_conf: Some(Module::merge_loc_conf),
};

// Unmangled: the table nginx's own build generates names it.
#[no_mangle]
#[used]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_upstream_cause_module: ngx_module_t = ngx_module_t {
    ctx: ptr::addr_of!(NGX_HTTP_UPSTREAM_CAUSE_MODULE_CTX).cast_mut().cast(),
    // SAFETY: a static array of commands, terminated by an empty one.
    commands: unsafe { ptr::addr_of_mut!(directives::COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    ..ngx_module_t::default()
};

// SAFETY: the conf types match what create_*_conf allocate.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = LocConf;
}
// SAFETY: as above.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = MainConf;
}

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module static is only written by nginx while loading.
        unsafe { &*ptr::addr_of!(ngx_http_upstream_cause_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        guard(Status::NGX_ERROR.into(), || {
            crate::vars::add_variables!(cf, vars::VARS, ngx_http_add_variable)
        })
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        guard(Status::NGX_ERROR.into(), || {
            // SAFETY: nginx's cf during the http block.
            let Some(cf) = (unsafe { cf.as_mut() }) else {
                return Status::NGX_ERROR.into();
            };
            let Some(mcf) = Module::main_conf(cf) else {
                return Status::NGX_ERROR.into();
            };
            if directives::check_zone_needed(cf, mcf).is_err() {
                return Status::NGX_ERROR.into();
            }
            // After the upstream module's init_main_conf set every peer.init.
            wrap::wrap_upstreams(cf);

            trace::install();

            // SAFETY: the header filter chain is only changed at configuration time.
            unsafe {
                header::NEXT = ngx::ffi::ngx_http_top_header_filter;
                ngx::ffi::ngx_http_top_header_filter = Some(header::header_filter);
            }

            let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(cf) else {
                return Status::NGX_ERROR.into();
            };
            let handlers = &mut cmcf.phases[NGX_HTTP_LOG_PHASE as usize].handlers;
            let handler: ngx_http_handler_pt = Some(logline::log_handler);
            if crate::conf::first_handler(handlers, handler).is_err() {
                return Status::NGX_ERROR.into();
            }
            Status::NGX_OK.into()
        })
    }

    unsafe extern "C" fn merge_loc_conf(
        cf: *mut ngx_conf_t,
        prev: *mut core::ffi::c_void,
        conf: *mut core::ffi::c_void,
    ) -> *mut core::ffi::c_char {
        guard(ngx::core::NGX_CONF_ERROR, || {
            // SAFETY: nginx passes its cf, our parent's and our own LocConf.
            let (Some(cf), Some(prev), Some(conf)) = (
                unsafe { cf.as_mut() },
                unsafe { prev.cast::<LocConf>().as_ref() },
                unsafe { conf.cast::<LocConf>().as_mut() },
            ) else {
                return ngx::core::NGX_CONF_ERROR;
            };
            if conf.merge(prev).is_err() {
                return ngx::core::NGX_CONF_ERROR;
            }
            if conf.enabled() && tap_location(cf).is_err() {
                return ngx::core::NGX_CONF_ERROR;
            }
            ngx::core::NGX_CONF_OK
        })
    }
}

/// Our index in `r->ctx` and the conf arrays.
pub(crate) fn ctx_index() -> usize {
    Module::module().ctx_index
}

/// At merge time of a location where the module is on: gives it a copy of
/// its log with the tap's writer in front (see `crate::tap`). Only
/// locations (they have a name; `if` and `limit_except` blocks have their
/// location's): the log of a `server` block (often the one nginx shares
/// with every location) is also the listening sockets', whose lines are
/// about no request. (A subrequest runs on its main request's connection
/// log: it is heard if the module is on where the main request is.)
/// `Err` when the cycle's pool is out of memory.
fn tap_location(cf: &mut ngx_conf_t) -> Result<(), ()> {
    // During merge, cf->ctx's loc_conf is the location being merged.
    let Some(clcf) = NgxHttpCoreModule::location_conf_mut(cf) else {
        return Ok(());
    };
    if clcf.name.len == 0 {
        return Ok(());
    }
    // SAFETY: after the core module's merge, error_log is a live log of
    // the cycle being configured.
    let Some(orig) = (unsafe { clcf.error_log.as_ref() }) else {
        return Ok(());
    };
    // SAFETY: the cycle's pool, which outlives every request of the cycle.
    let pool = unsafe { ngx::core::Pool::from_ngx_pool(cf.pool) };
    if let Some(log) = tap::tap(&pool, orig, observe::line)? {
        clcf.error_log = log;
    }
    Ok(())
}
