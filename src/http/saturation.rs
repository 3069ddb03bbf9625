//! HTTP's groups: whether one that had no peer to give is saturated
//! (`crate::saturation`).

use ngx::ffi::{ngx_http_upstream_rr_peer_t, ngx_http_upstream_rr_peers_t, ngx_http_upstream_srv_conf_t};

crate::saturation::round_robin!(
    ngx_http_upstream_rr_peers_t,
    ngx_http_upstream_rr_peer_t,
    ngx_http_upstream_srv_conf_t,
    "http_upstream_zone"
);
