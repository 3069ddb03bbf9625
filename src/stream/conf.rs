//! The stream module's configuration and directives: `upstream_cause`,
//! `upstream_cause_log` (in `stream` and `server`) and
//! `upstream_cause_zone` (in `stream`), with HTTP's meanings and messages
//! (`crate::conf`).

use core::ffi::{c_char, c_void};
use core::ptr;

use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_shm_zone_t, ngx_uint_t, NGX_CONF_FLAG, NGX_CONF_TAKE1, NGX_CONF_TAKE2, NGX_LOG_ERR,
    NGX_STREAM_MAIN_CONF, NGX_STREAM_SRV_CONF,
};
use ngx::ngx_string;

use super::{MAIN_CONF_OFFSET, SRV_CONF_OFFSET};
use crate::conf::{arg, command, directive, flag, log_line, once, zone_directive, LogLine};

/// Per `server` (and the `stream` block, which servers inherit from).
#[derive(Debug, Default)]
pub struct SrvConf {
    /// `upstream_cause on|off` (default on).
    enabled: Option<bool>,
    /// `upstream_cause_log LEVEL|off` (default error).
    log: Option<LogLine>,
}

impl SrvConf {
    pub fn merge(&mut self, prev: &SrvConf) {
        self.enabled = self.enabled.or(prev.enabled).or(Some(true));
        self.log = self.log.or(prev.log).or(Some(LogLine::At(NGX_LOG_ERR as ngx_uint_t)));
    }

    pub fn enabled(&self) -> bool {
        self.enabled == Some(true)
    }

    /// The enriched line's level, if it is written.
    pub fn log_level(&self) -> Option<ngx_uint_t> {
        match self.log {
            Some(LogLine::At(level)) => Some(level),
            _ => None,
        }
    }
}

/// Per `stream` block.
pub struct MainConf {
    /// `upstream_cause_zone`, if configured.
    pub zone: *mut ngx_shm_zone_t,
}

impl Default for MainConf {
    fn default() -> Self {
        MainConf { zone: ptr::null_mut() }
    }
}

const ANY_LEVEL: u32 = NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF;

pub static mut COMMANDS: [ngx_command_t; 4] = [
    command(
        ngx_string!("upstream_cause"),
        ANY_LEVEL | NGX_CONF_FLAG,
        set_enabled,
        SRV_CONF_OFFSET,
    ),
    command(
        ngx_string!("upstream_cause_log"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        set_log,
        SRV_CONF_OFFSET,
    ),
    command(
        ngx_string!("upstream_cause_zone"),
        NGX_STREAM_MAIN_CONF | NGX_CONF_TAKE2,
        set_zone,
        MAIN_CONF_OFFSET,
    ),
    ngx_command_t::empty(),
];

extern "C" fn set_enabled(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    directive(cf, cmd, conf, |_, scf: &mut SrvConf, args| {
        once(&mut scf.enabled, flag(arg(args, 1)))
    })
}

extern "C" fn set_log(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    directive(cf, cmd, conf, |_, scf: &mut SrvConf, args| {
        once(&mut scf.log, log_line(arg(args, 1)))
    })
}

extern "C" fn set_zone(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    directive(cf, cmd, conf, |cf, mcf: &mut MainConf, args| {
        let tag = ptr::addr_of_mut!(super::ngx_stream_upstream_cause_module).cast();
        zone_directive(cf, &mut mcf.zone, args, tag)
    })
}
