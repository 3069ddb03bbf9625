//! Stream's groups: whether one that had no peer to give is saturated
//! (`crate::saturation`).

use ngx::ffi::{ngx_stream_upstream_rr_peer_t, ngx_stream_upstream_rr_peers_t, ngx_stream_upstream_srv_conf_t};

crate::saturation::round_robin!(
    ngx_stream_upstream_rr_peers_t,
    ngx_stream_upstream_rr_peer_t,
    ngx_stream_upstream_srv_conf_t,
    "stream_upstream_zone"
);
