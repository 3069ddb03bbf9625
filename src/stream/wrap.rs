//! Wrapping every stream upstream's balancer to observe each attempt
//! (`crate::slots::balancer!`): what `free` sees goes to `super::session`.

use ngx::ffi::{
    ngx_conf_t, ngx_stream_session_t, ngx_stream_upstream_init_peer_pt, ngx_stream_upstream_main_conf_t,
    ngx_stream_upstream_module, ngx_stream_upstream_srv_conf_t,
};

crate::slots::balancer!(
    ngx_stream_session_t,
    ngx_stream_upstream_srv_conf_t,
    ngx_stream_upstream_init_peer_pt,
    super::enabled,
    super::session::on_free
);

/// Every stream upstream group, from postconfiguration (after the upstream
/// module's init_main_conf set every peer.init).
pub fn wrap_upstreams(cf: &mut ngx_conf_t) {
    let Some(ctx) = super::conf_ctx(cf) else { return };
    // SAFETY: the stream upstream module's entry of the main configuration.
    let Some(umcf) = (unsafe {
        super::conf_of::<ngx_stream_upstream_main_conf_t>(ctx.main_conf, ngx_stream_upstream_module.ctx_index)
    }) else {
        return;
    };
    // SAFETY: `upstreams` is an array of group pointers.
    let upstreams = unsafe { umcf.upstreams.as_slice::<*mut ngx_stream_upstream_srv_conf_t>() };
    wrap_all(cf, upstreams);
}
