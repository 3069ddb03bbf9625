//! Directives and the location configuration.

use core::ffi::{c_char, c_void};
use core::ptr;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_flag_t, ngx_str_t, ngx_uint_t, NGX_CONF_FLAG, NGX_CONF_NOARGS, NGX_CONF_TAKE1,
    NGX_CONF_TAKE2, NGX_CONF_UNSET, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF,
    NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF, NGX_LOG_ALERT, NGX_LOG_CRIT, NGX_LOG_EMERG, NGX_LOG_ERR,
    NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::http::{Merge, MergeConfigError};
use ngx::{ngx_conf_log_error, ngx_string};

const NGX_CONF_UNSET_UINT: ngx_uint_t = ngx_uint_t::MAX;

/// `upstream_cause_log off` is stored as level 0 (no nginx level is 0 but
/// `stderr`, which is not a valid choice here).
pub const LOG_OFF: ngx_uint_t = 0;

#[derive(Debug)]
#[repr(C)]
pub struct LocConf {
    /// `upstream_cause on|off`
    pub enabled: ngx_flag_t,
    /// `upstream_cause_header`: the header name; `len == 0` when off.
    pub header: ngx_str_t,
    header_set: bool,
    /// `upstream_cause_log`: an nginx log level, or [`LOG_OFF`].
    pub log_level: ngx_uint_t,
}

impl Default for LocConf {
    fn default() -> Self {
        LocConf {
            enabled: NGX_CONF_UNSET as ngx_flag_t,
            header: ngx_str_t {
                len: 0,
                data: ptr::null_mut(),
            },
            header_set: false,
            log_level: NGX_CONF_UNSET_UINT,
        }
    }
}

impl LocConf {
    pub fn enabled(&self) -> bool {
        self.enabled == 1
    }

    pub fn header_name(&self) -> Option<&[u8]> {
        if self.header.len == 0 || self.header.data.is_null() {
            return None;
        }
        // SAFETY: set from a configuration argument that lives in the
        // cycle's pool for as long as this configuration does.
        Some(unsafe { core::slice::from_raw_parts(self.header.data, self.header.len) })
    }
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &LocConf) -> Result<(), MergeConfigError> {
        if self.enabled == NGX_CONF_UNSET as ngx_flag_t {
            self.enabled = if prev.enabled == NGX_CONF_UNSET as ngx_flag_t {
                1
            } else {
                prev.enabled
            };
        }
        if !self.header_set {
            self.header = prev.header;
            self.header_set = prev.header_set;
        }
        if self.log_level == NGX_CONF_UNSET_UINT {
            self.log_level = if prev.log_level == NGX_CONF_UNSET_UINT {
                NGX_LOG_ERR as ngx_uint_t
            } else {
                prev.log_level
            };
        }
        Ok(())
    }
}

const ANY_LEVEL: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

pub static mut COMMANDS: [ngx_command_t; 6] = [
    ngx_command_t {
        name: ngx_string!("upstream_cause"),
        type_: (ANY_LEVEL | NGX_CONF_FLAG) as ngx_uint_t,
        set: Some(set_flag),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("upstream_cause_header"),
        type_: (ANY_LEVEL | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(set_header),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("upstream_cause_log"),
        type_: (ANY_LEVEL | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(set_log),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("upstream_cause_zone"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE2) as ngx_uint_t,
        set: Some(crate::zone::set_zone),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("upstream_cause_metrics"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS) as ngx_uint_t,
        set: Some(crate::zone::set_metrics),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t::empty(),
];

/// The directive's name and its one argument.
///
/// # Safety
/// `cf` and `cmd` come from nginx's configuration parser.
unsafe fn name_and_arg<'a>(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t) -> (&'a [u8], ngx_str_t) {
    // SAFETY: the parser passes a valid cf whose args hold the directive
    // name and, for TAKE1 directives, exactly one argument.
    let args = unsafe { (*(*cf).args).as_slice::<ngx_str_t>() };
    // SAFETY: the parser passes the command being handled.
    let name = unsafe { (*cmd).name.as_bytes() };
    (
        name,
        args.get(1).copied().unwrap_or(ngx_str_t {
            len: 0,
            data: ptr::null_mut(),
        }),
    )
}

/// nginx's own answer to a directive given twice in one block.
pub fn duplicate(cf: *mut ngx_conf_t, name: &[u8]) -> *mut c_char {
    ngx_conf_log_error!(
        NGX_LOG_EMERG,
        cf,
        "\"{}\" directive is duplicate",
        String::from_utf8_lossy(name)
    );
    NGX_CONF_ERROR
}

/// Bytes of a wrong value quoted in an `[emerg]`: nginx cuts the whole
/// message at 1024 bytes, and the directive's name comes after the value.
const SHOWN_MAX: usize = 64;

/// A directive's value as quoted in a message: its first bytes, then
/// "..." if there were more.
pub fn shown(value: &[u8]) -> String {
    let cut = &value[..value.len().min(SHOWN_MAX)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if cut.len() < value.len() {
        s.push_str("...");
    }
    s
}

fn invalid(cf: *mut ngx_conf_t, name: &[u8], value: &[u8], why: &str) -> *mut c_char {
    ngx_conf_log_error!(
        NGX_LOG_EMERG,
        cf,
        "invalid value \"{}\" in \"{}\" directive{}",
        shown(value),
        String::from_utf8_lossy(name),
        why
    );
    NGX_CONF_ERROR
}

/// `upstream_cause on|off`: nginx's flag handler, but a wrong value is
/// quoted cut (see [`shown`]) so that the message keeps the directive's
/// name.
extern "C" fn set_flag(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    crate::guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx passes our LocConf for NGX_HTTP_LOC_CONF_OFFSET.
        let lcf = unsafe { &mut *conf.cast::<LocConf>() };
        // SAFETY: called by the configuration parser.
        let (name, arg) = unsafe { name_and_arg(cf, cmd) };
        if lcf.enabled != NGX_CONF_UNSET as ngx_flag_t {
            return duplicate(cf, name);
        }
        let value = arg.as_bytes();
        lcf.enabled = if value.eq_ignore_ascii_case(b"on") {
            1
        } else if value.eq_ignore_ascii_case(b"off") {
            0
        } else {
            return invalid(cf, name, value, ", it must be \"on\" or \"off\"");
        };
        NGX_CONF_OK
    })
}

extern "C" fn set_header(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    crate::guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx passes our LocConf for NGX_HTTP_LOC_CONF_OFFSET.
        let lcf = unsafe { &mut *conf.cast::<LocConf>() };
        // SAFETY: called by the configuration parser.
        let (name, arg) = unsafe { name_and_arg(cf, cmd) };
        if lcf.header_set {
            return duplicate(cf, name);
        }
        let value = arg.as_bytes();
        if value == b"off" {
            lcf.header = ngx_str_t {
                len: 0,
                data: ptr::null_mut(),
            };
        } else if upstream_cause_core::render::is_header_name(value) {
            lcf.header = arg;
        } else {
            return invalid(cf, name, value, ", it must be \"off\" or a header name");
        }
        lcf.header_set = true;
        NGX_CONF_OK
    })
}

const LEVELS: [(&[u8], u32); 8] = [
    (b"off", 0),
    (b"emerg", NGX_LOG_EMERG),
    (b"alert", NGX_LOG_ALERT),
    (b"crit", NGX_LOG_CRIT),
    (b"error", NGX_LOG_ERR),
    (b"warn", NGX_LOG_WARN),
    (b"notice", NGX_LOG_NOTICE),
    (b"info", NGX_LOG_INFO),
];

extern "C" fn set_log(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    crate::guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx passes our LocConf for NGX_HTTP_LOC_CONF_OFFSET.
        let lcf = unsafe { &mut *conf.cast::<LocConf>() };
        // SAFETY: called by the configuration parser.
        let (name, arg) = unsafe { name_and_arg(cf, cmd) };
        if lcf.log_level != NGX_CONF_UNSET_UINT {
            return duplicate(cf, name);
        }
        let value = arg.as_bytes();
        match LEVELS.iter().find(|(n, _)| *n == value) {
            Some((_, level)) => {
                lcf.log_level = *level as ngx_uint_t;
                NGX_CONF_OK
            }
            None => invalid(
                cf,
                name,
                value,
                ", it must be \"off\", \"emerg\", \"alert\", \"crit\", \"error\", \"warn\", \"notice\" or \"info\"",
            ),
        }
    })
}
