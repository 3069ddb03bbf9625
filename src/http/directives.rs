//! The directives: the command table and one handler each. A handler
//! checks its arguments and sets its `Option`; what is wrong is a
//! [`ConfError`], said by `crate::conf`.

use core::ffi::{c_char, c_void};
use core::ptr;

use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_str_t, ngx_uint_t, NGX_CONF_FLAG, NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE2,
    NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_string;

use super::conf::{Header, LocConf, MainConf, ProxyStatus};
use super::Module;
use crate::conf::{arg, command, directive, flag, log_line, once, report_at, zone_directive, ConfError};

const ANY_LEVEL: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

pub static mut COMMANDS: [ngx_command_t; 8] = [
    command(
        ngx_string!("upstream_cause"),
        ANY_LEVEL | NGX_CONF_FLAG,
        set_enabled,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("upstream_cause_header"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        set_header,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("upstream_cause_proxy_status"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        set_proxy_status,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("upstream_cause_log"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        set_log,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("upstream_cause_zone"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE2,
        set_zone,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("upstream_cause_metrics"),
        NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
        set_metrics,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("upstream_cause_status"),
        NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
        set_status,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    ngx_command_t::empty(),
];

/// `upstream_cause on|off`.
extern "C" fn set_enabled(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    directive(cf, cmd, conf, |_, lcf: &mut LocConf, args| {
        once(&mut lcf.enabled, flag(arg(args, 1)))
    })
}

extern "C" fn set_header(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    directive(cf, cmd, conf, |_, lcf: &mut LocConf, args| {
        if lcf.header.is_some() {
            return Err(ConfError::Duplicate);
        }
        let value = arg(args, 1);
        lcf.header = Some(if value == b"off" {
            Header::Off
        } else if upstream_cause_core::render::is_header_name(value) {
            Header::Name(args[1], header_hash(value))
        } else {
            return Err(ConfError::Invalid {
                value,
                expected: "\"off\" or a header name",
            });
        });
        Ok(())
    })
}

/// The member's name `on` gives.
static NGINX: &[u8] = b"nginx";

/// `upstream_cause_proxy_status off|on|NAME`.
extern "C" fn set_proxy_status(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    directive(cf, cmd, conf, |_, lcf: &mut LocConf, args| {
        if lcf.proxy_status.is_some() {
            return Err(ConfError::Duplicate);
        }
        let value = arg(args, 1);
        lcf.proxy_status = Some(ProxyStatus(match value {
            b"off" => None,
            b"on" => Some(ngx_str_t {
                len: NGINX.len(),
                data: NGINX.as_ptr().cast_mut(),
            }),
            _ if value.len() <= 64 && upstream_cause_core::proxy_status::is_token(value) => Some(args[1]),
            _ => {
                return Err(ConfError::Invalid {
                    value,
                    expected: "\"off\", \"on\" or a name (a Structured Fields token of at most 64 bytes)",
                })
            }
        }));
        Ok(())
    })
}

/// `upstream_cause_log LEVEL|off`.
extern "C" fn set_log(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    directive(cf, cmd, conf, |_, lcf: &mut LocConf, args| {
        once(&mut lcf.log, log_line(arg(args, 1)))
    })
}

extern "C" fn set_zone(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    directive(cf, cmd, conf, |cf, mcf: &mut MainConf, args| {
        let tag = ptr::addr_of_mut!(super::ngx_http_upstream_cause_module).cast();
        zone_directive(cf, &mut mcf.zone, args, tag)
    })
}

extern "C" fn set_metrics(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    directive(cf, cmd, conf, |cf, _: &mut LocConf, _| {
        serve(cf, super::metrics::handler, |mcf| &mut mcf.metrics_at)
    })
}

extern "C" fn set_status(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    directive(cf, cmd, conf, |cf, _: &mut LocConf, _| {
        serve(cf, super::status::handler, |mcf| &mut mcf.status_at)
    })
}

/// Makes the location serve with `handler`, and keeps where the first
/// such directive is (`at` of the main conf): a missing zone is said there.
fn serve(
    cf: &mut ngx_conf_t,
    handler: unsafe extern "C" fn(*mut ngx::ffi::ngx_http_request_t) -> ngx::ffi::ngx_int_t,
    at: impl FnOnce(&mut MainConf) -> &mut Option<(ngx_str_t, ngx_uint_t)>,
) -> Result<(), ConfError<'static>> {
    let clcf = NgxHttpCoreModule::location_conf_mut(cf).ok_or(ConfError::Failed)?;
    clcf.handler = Some(handler);
    let mcf = Module::main_conf_mut(cf).ok_or(ConfError::Failed)?;
    let at = at(mcf);
    if at.is_none() {
        // SAFETY: the file being parsed.
        let (mut file, line) = unsafe { ((*cf.conf_file).file.name, (*cf.conf_file).line) };
        // The name may live in a buffer an include frees: copied into
        // the configuration's pool.
        // SAFETY: the configuration's pool and the name's bytes.
        let copy = unsafe { ngx::ffi::ngx_pstrdup(cf.pool, &mut file) };
        if copy.is_null() {
            return Err(ConfError::Failed);
        }
        file.data = copy;
        *at = Some((file, line));
    }
    Ok(())
}

/// At the end of the http block: a metrics or status location needs a
/// zone. Said at the first such directive.
pub fn check_zone_needed(cf: &ngx_conf_t, mcf: &MainConf) -> Result<(), ()> {
    if !mcf.zone.is_null() {
        return Ok(());
    }
    let named: [(&[u8], _); 2] = [
        (b"upstream_cause_metrics", mcf.metrics_at),
        (b"upstream_cause_status", mcf.status_at),
    ];
    for (name, at) in named {
        if let Some((file, line)) = at {
            report_at(cf, name, ConfError::NeedsZone, file.as_bytes(), line);
            return Err(());
        }
    }
    Ok(())
}

/// A header name's hash as nginx's upstream modules compute it for the
/// headers they receive: nginx's own `ngx_hash_key_lc` (the same as their
/// parsers' running hash for the bytes a name may have here: letters,
/// digits, `-` and `_`).
fn header_hash(name: &[u8]) -> ngx_uint_t {
    // SAFETY: reads `len` bytes of the name, writes nothing.
    unsafe { ngx::ffi::ngx_hash_key_lc(name.as_ptr().cast_mut(), name.len()) }
}
