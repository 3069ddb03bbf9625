//! Wrapping every HTTP upstream's balancer to observe each attempt
//! (`crate::slots::balancer!`): what `free` sees goes to `super::observe`.

use ngx::ffi::{ngx_conf_t, ngx_http_request_t, ngx_http_upstream_init_peer_pt, ngx_http_upstream_srv_conf_t};
use ngx::http::{HttpModuleMainConf, NgxHttpUpstreamModule};

crate::slots::balancer!(
    ngx_http_request_t,
    ngx_http_upstream_srv_conf_t,
    ngx_http_upstream_init_peer_pt,
    super::conf::enabled,
    super::observe::on_free
);

/// Every HTTP upstream group, from postconfiguration (after the upstream
/// module's init_main_conf set every peer.init).
pub fn wrap_upstreams(cf: &mut ngx_conf_t) {
    let Some(umcf) = NgxHttpUpstreamModule::main_conf(cf) else {
        return;
    };
    // SAFETY: `upstreams` is an array of group pointers.
    let upstreams = unsafe { umcf.upstreams.as_slice::<*mut ngx_http_upstream_srv_conf_t>() };
    wrap_all(cf, upstreams);
}
