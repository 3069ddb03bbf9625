//! ngx_http_upstream_cause_module: tells why nginx answered 502/504.
//!
//! This file holds only the module statics, the `HttpModule` impl and its
//! initialisation; each concern has its own file. The classification logic
//! is in the `upstream-cause-core` crate, which has no nginx types.

use core::ptr;

use ngx::core::Status;
use ngx::ffi::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_handler_pt, ngx_http_module_t,
    ngx_http_phases_NGX_HTTP_LOG_PHASE as NGX_HTTP_LOG_PHASE, ngx_int_t, ngx_module_t, ngx_uint_t, NGX_HTTP_MODULE,
};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, Merge, NgxHttpCoreModule};

mod conf;
mod ctx;
mod header;
mod logline;
mod metrics;
mod observe;
mod saturation;
mod tap;
mod trace;
mod vars;
mod wrap;
mod zone;

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

// The `ngx_modules` table nginx's `load_module` looks for in a cdylib. In
// nginx's own build (`config`) nginx generates it, so it must not be here.
#[cfg(feature = "export-modules")]
ngx::ngx_modules!(ngx_http_upstream_cause_module);

// Unmangled: the table nginx's own build generates names it.
#[no_mangle]
#[used]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_upstream_cause_module: ngx_module_t = ngx_module_t {
    ctx: ptr::addr_of!(NGX_HTTP_UPSTREAM_CAUSE_MODULE_CTX).cast_mut().cast(),
    // SAFETY: a static array of commands, terminated by an empty one.
    commands: unsafe { ptr::addr_of_mut!(conf::COMMANDS[0]) },
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
            // SAFETY: VARS is only touched here, single-threaded, at configuration time.
            for v in unsafe { (*ptr::addr_of_mut!(vars::VARS)).iter_mut() } {
                // SAFETY: nginx's cf; the name is a static string.
                let var = unsafe { ngx_http_add_variable(cf, &mut v.name, v.flags) };
                // SAFETY: null or a fresh variable slot.
                let Some(var) = (unsafe { var.as_mut() }) else {
                    return Status::NGX_ERROR.into();
                };
                var.get_handler = v.get_handler;
                var.data = v.data;
            }
            Status::NGX_OK.into()
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
            if conf::check_metrics(cf, mcf).is_err() {
                return Status::NGX_ERROR.into();
            }
            // After the upstream module's init_main_conf set every peer.init.
            wrap::balancer::wrap_all(cf);

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
            // SAFETY: an ngx_array_t of handler pointers in the cycle pool.
            if unsafe { ngx::ffi::ngx_array_push(handlers) }.is_null() {
                return Status::NGX_ERROR.into();
            }
            // SAFETY: the array's elements, now one more.
            let all = unsafe { handlers.as_slice_mut::<ngx_http_handler_pt>() };
            // Log phase handlers run in array order: ours goes first, so
            // that the enriched line and the counters are written before
            // the access log's entry (whoever reads the access log sees
            // them already there).
            all.rotate_right(1);
            all[0] = Some(logline::log_handler);
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
            if conf.enabled() && tap::tap_location(cf).is_err() {
                return ngx::core::NGX_CONF_ERROR;
            }
            ngx::core::NGX_CONF_OK
        })
    }
}

/// Runs `f`, turning a panic into `default` so that no unwinding ever
/// crosses into nginx's C frames. A caught panic is a bug of ours: it is
/// logged at `alert` and the request goes on unannotated.
pub(crate) fn guard<R>(default: R, f: impl FnOnce() -> R) -> R {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        // SAFETY: ngx_cycle is this process's live cycle, its log valid while it runs.
        if let Some(log) = unsafe { ngx::ffi::ngx_cycle.as_ref() }
            .map(|c| c.log)
            .filter(|l| !l.is_null())
        {
            ngx::ngx_log_error!(
                ngx::ffi::NGX_LOG_ALERT,
                log,
                "upstream_cause: internal error (a Rust panic was caught); the request is left unannotated"
            );
        }
        default
    })
}

/// Our index in `r->ctx` and the conf arrays.
pub(crate) fn ctx_index() -> usize {
    Module::module().ctx_index
}

// The memory figures the README gives, held to the code (64-bit targets).
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(ctx::CTX_BYTES == 56);
    assert!(ctx::RECORDS_BYTES == 1312);
    assert!(zone::SERIES_BYTES == 272);
    // (a copy of nginx's ngx_log_t, whose size is the version's, and this)
    assert!(tap::SAVED_BYTES == 32);
};
