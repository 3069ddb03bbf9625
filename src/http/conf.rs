//! The module's configuration: the structs nginx keeps per `http` block and
//! per location, their merge, and which location a request reads.
//!
//! Each setting is an `Option`: `None` until a directive or the merge sets
//! it. After the merge every location's settings are `Some`.

use core::ptr;

use ngx::ffi::{ngx_http_request_t, ngx_shm_zone_t, ngx_str_t, ngx_uint_t, NGX_LOG_ERR};
use ngx::http::{HttpModuleLocationConf, Merge, MergeConfigError};

use super::Module;

pub use crate::conf::LogLine;

/// `upstream_cause_header`.
#[derive(Clone, Copy, Debug)]
pub enum Header {
    Off,
    /// The header's name, a configuration argument in the cycle's pool,
    /// and its hash as nginx's upstream modules compute it for a header
    /// they received (`ngx_hash_key_lc`).
    Name(ngx_str_t, ngx_uint_t),
}

/// `upstream_cause_proxy_status`: the name of nginx's member (an
/// sf-token), or `None` for off.
#[derive(Clone, Copy, Debug)]
pub struct ProxyStatus(pub Option<ngx_str_t>);

#[derive(Debug, Default)]
pub struct LocConf {
    /// `upstream_cause on|off` (default on).
    pub(super) enabled: Option<bool>,
    /// `upstream_cause_header NAME|off` (default off).
    pub(super) header: Option<Header>,
    /// `upstream_cause_log LEVEL|off` (default error).
    pub(super) log: Option<LogLine>,
    /// `upstream_cause_proxy_status off|on|NAME` (default off).
    pub(super) proxy_status: Option<ProxyStatus>,
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &LocConf) -> Result<(), MergeConfigError> {
        self.enabled = self.enabled.or(prev.enabled).or(Some(true));
        self.header = self.header.or(prev.header).or(Some(Header::Off));
        self.log = self.log.or(prev.log).or(Some(LogLine::At(NGX_LOG_ERR as ngx_uint_t)));
        self.proxy_status = self.proxy_status.or(prev.proxy_status).or(Some(ProxyStatus(None)));
        Ok(())
    }
}

impl LocConf {
    /// The configuration of the location the request is in now.
    /// (It lives as long as the request's configuration cycle.)
    pub fn of(r: &ngx_http_request_t) -> Option<&'static LocConf> {
        Module::location_conf(r)
    }

    pub fn enabled(&self) -> bool {
        self.enabled == Some(true)
    }

    /// The cause header's name and its hash, if one is configured (also
    /// where the module is off: an upstream's header of that name is
    /// still hidden).
    pub fn header_hashed(&self) -> Option<(&ngx_str_t, ngx_uint_t)> {
        match &self.header {
            Some(Header::Name(name, hash)) => Some((name, *hash)),
            _ => None,
        }
    }

    /// The name of nginx's `Proxy-Status` member, if the field is added.
    pub fn proxy_status(&self) -> Option<&ngx_str_t> {
        self.proxy_status.as_ref().and_then(|p| p.0.as_ref())
    }

    /// Whether a response's headers may be changed here: a cause header
    /// or `Proxy-Status` is configured.
    pub fn changes_headers(&self) -> bool {
        self.header_hashed().is_some() || self.proxy_status().is_some()
    }

    /// The enriched line's level, if it is written.
    pub fn log_level(&self) -> Option<ngx_uint_t> {
        match self.log {
            Some(LogLine::At(level)) => Some(level),
            _ => None,
        }
    }
}

/// Whether the module is on in the location the request is in now.
///
/// Observing asks where the attempt is made (the balancer's init, a line
/// logged during it); reporting asks where the response is made (the
/// header, the log phase, the variables). The two differ only after an
/// internal redirect to a location with another setting.
pub fn enabled(r: &ngx_http_request_t) -> bool {
    LocConf::of(r).is_some_and(LocConf::enabled)
}

/// Module-wide state of one configuration cycle.
pub struct MainConf {
    /// `upstream_cause_zone`, if configured.
    pub zone: *mut ngx_shm_zone_t,
    /// Where the first `upstream_cause_metrics` is (file, line), if any:
    /// a missing zone is said there.
    pub metrics_at: Option<(ngx_str_t, ngx_uint_t)>,
    /// The same for `upstream_cause_status`.
    pub status_at: Option<(ngx_str_t, ngx_uint_t)>,
}

impl Default for MainConf {
    fn default() -> Self {
        MainConf {
            zone: ptr::null_mut(),
            metrics_at: None,
            status_at: None,
        }
    }
}
