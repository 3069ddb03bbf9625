//! The directives: the command table and one handler each. A handler
//! checks its arguments and sets its `Option`; what is wrong is a
//! [`ConfError`], said by `error.rs`.

use core::ffi::{c_char, c_void};
use core::ptr;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_pagesize, ngx_parse_size, ngx_str_t, ngx_uint_t, NGX_CONF_FLAG, NGX_CONF_NOARGS,
    NGX_CONF_TAKE1, NGX_CONF_TAKE2, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF,
    NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF, NGX_LOG_ALERT, NGX_LOG_CRIT, NGX_LOG_EMERG, NGX_LOG_ERR,
    NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_string;

use super::error::{report, report_at, ConfError};
use super::{Header, LocConf, LogLine, MainConf, ProxyStatus};
use crate::Module;

const ANY_LEVEL: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

const fn command(
    name: ngx_str_t,
    type_: u32,
    set: extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char,
    conf: usize,
) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: type_ as ngx_uint_t,
        set: Some(set),
        conf,
        offset: 0,
        post: ptr::null_mut(),
    }
}

pub static mut COMMANDS: [ngx_command_t; 7] = [
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
    ngx_command_t::empty(),
];

/// The arguments after the directive's name.
type Args<'a> = &'a [ngx_str_t];

/// Argument `i` (1 is the first after the name); empty if there is none.
fn arg(args: Args<'_>, i: usize) -> &[u8] {
    args.get(i).map_or(&[], |a| a.as_bytes())
}

/// Runs a directive's handler on its configuration `C` and its arguments,
/// and says what is wrong.
fn directive<C>(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
    handler: impl for<'a> FnOnce(&mut ngx_conf_t, &mut C, Args<'a>) -> Result<(), ConfError<'a>>,
) -> *mut c_char {
    crate::guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx's parser passes its cf, the command being handled,
        // and our configuration of the command's kind (C, by `conf` above).
        let (Some(cf), Some(cmd), Some(conf)) = (unsafe { cf.as_mut() }, unsafe { cmd.as_ref() }, unsafe {
            conf.cast::<C>().as_mut()
        }) else {
            return NGX_CONF_ERROR;
        };
        // SAFETY: cf->args holds the directive's name and its arguments, in
        // the configuration's pool for the whole parse.
        let args = unsafe { (*cf.args).as_slice::<ngx_str_t>() };
        match handler(cf, conf, args) {
            Ok(()) => NGX_CONF_OK,
            Err(e) => report(cf, cmd.name.as_bytes(), e),
        }
    })
}

/// `upstream_cause on|off`.
extern "C" fn set_enabled(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    directive(cf, cmd, conf, |_, lcf: &mut LocConf, args| {
        if lcf.enabled.is_some() {
            return Err(ConfError::Duplicate);
        }
        let value = arg(args, 1);
        lcf.enabled = Some(if value.eq_ignore_ascii_case(b"on") {
            true
        } else if value.eq_ignore_ascii_case(b"off") {
            false
        } else {
            return Err(ConfError::Invalid {
                value,
                expected: "\"on\" or \"off\"",
            });
        });
        Ok(())
    })
}

/// `upstream_cause_header NAME|off`.
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

const LEVELS: [(&[u8], LogLine); 8] = [
    (b"off", LogLine::Off),
    (b"emerg", LogLine::At(NGX_LOG_EMERG as ngx_uint_t)),
    (b"alert", LogLine::At(NGX_LOG_ALERT as ngx_uint_t)),
    (b"crit", LogLine::At(NGX_LOG_CRIT as ngx_uint_t)),
    (b"error", LogLine::At(NGX_LOG_ERR as ngx_uint_t)),
    (b"warn", LogLine::At(NGX_LOG_WARN as ngx_uint_t)),
    (b"notice", LogLine::At(NGX_LOG_NOTICE as ngx_uint_t)),
    (b"info", LogLine::At(NGX_LOG_INFO as ngx_uint_t)),
];

/// `upstream_cause_log LEVEL|off`.
extern "C" fn set_log(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    directive(cf, cmd, conf, |_, lcf: &mut LocConf, args| {
        if lcf.log.is_some() {
            return Err(ConfError::Duplicate);
        }
        let value = arg(args, 1);
        let Some((_, level)) = LEVELS.iter().find(|(n, _)| *n == value) else {
            return Err(ConfError::Invalid {
                value,
                expected: "\"off\", \"emerg\", \"alert\", \"crit\", \"error\", \"warn\", \"notice\" or \"info\"",
            });
        };
        lcf.log = Some(*level);
        Ok(())
    })
}

/// `upstream_cause_zone NAME SIZE`.
extern "C" fn set_zone(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    directive(cf, cmd, conf, |cf, mcf: &mut MainConf, args| {
        if !mcf.zone.is_null() {
            return Err(ConfError::Duplicate);
        }
        let name = &args[1];
        if name.len == 0 {
            return Err(ConfError::InvalidZoneName);
        }
        let value = arg(args, 2);
        let mut size_arg = args[2];
        // SAFETY: a configuration argument, only read.
        let size = unsafe { ngx_parse_size(&mut size_arg) };
        let Ok(size) = usize::try_from(size) else {
            return Err(ConfError::InvalidZoneSize { value });
        };
        // SAFETY: set by nginx at startup.
        let least = 8 * unsafe { ngx_pagesize };
        if size < least {
            return Err(ConfError::ZoneTooSmall {
                value,
                least_kib: least / 1024,
            });
        }
        crate::zone::add(cf, name, size, mcf)
    })
}

/// `upstream_cause_metrics`: the location serves the scrape.
extern "C" fn set_metrics(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    directive(cf, cmd, conf, |cf, _: &mut LocConf, _| {
        let clcf = NgxHttpCoreModule::location_conf_mut(cf).ok_or(ConfError::Failed)?;
        clcf.handler = Some(crate::metrics::handler);
        let mcf = Module::main_conf_mut(cf).ok_or(ConfError::Failed)?;
        if mcf.metrics_at.is_none() {
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
            mcf.metrics_at = Some((file, line));
        }
        Ok(())
    })
}

/// At the end of the http block: a metrics location needs a zone. Said at
/// the first `upstream_cause_metrics`.
pub fn check_metrics(cf: &ngx_conf_t, mcf: &MainConf) -> Result<(), ()> {
    match mcf.metrics_at {
        Some((file, line)) if mcf.zone.is_null() => {
            report_at(
                cf,
                b"upstream_cause_metrics",
                ConfError::MetricsWithoutZone,
                file.as_bytes(),
                line,
            );
            Err(())
        }
        _ => Ok(()),
    }
}

/// A header name's hash as nginx's upstream modules compute it for the
/// headers they receive (`ngx_hash_key_lc`: `h = h * 31 + lowercase byte`,
/// the same as their parsers' running hash for the bytes a name may have
/// here: letters, digits, `-` and `_`).
fn header_hash(name: &[u8]) -> ngx_uint_t {
    name.iter().fold(0, |h: ngx_uint_t, &b| {
        h.wrapping_mul(31)
            .wrapping_add(ngx_uint_t::from(b.to_ascii_lowercase()))
    })
}
