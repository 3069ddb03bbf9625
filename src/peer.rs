//! What a peer connection shows when nginx ends its attempt (in the
//! balancer's `free`, before the inner balancer runs), the same for every
//! proxied protocol.

use ngx::ffi::ngx_peer_connection_t;
use upstream_cause_core::Observation;

/// The connection's flags: whether there was one, its read and write
/// events' ends, its TLS state, and whether it came from the keepalive
/// cache.
pub fn connection_flags(pc: &ngx_peer_connection_t, o: &mut Observation) {
    o.reused = pc.cached() != 0;
    // SAFETY: pc.connection is null or the live peer connection.
    let Some(c) = (unsafe { pc.connection.as_ref() }) else {
        return;
    };
    o.connection = true;
    // SAFETY: a live connection's events are valid.
    if let (Some(rd), Some(wr)) = unsafe { (c.read.as_ref(), c.write.as_ref()) } {
        o.read_eof = rd.eof() != 0;
        o.read_error = rd.error() != 0;
        o.read_timedout = rd.timedout() != 0;
        o.write_error = wr.error() != 0;
        o.write_timedout = wr.timedout() != 0;
    }
    // (TLS state exists only in an nginx built with SSL: configured
    // --with-compat alone, nginx's connection has none to read)
    #[cfg(ngx_feature = "ssl")]
    // SAFETY: c.ssl is null or the live SSL connection.
    if let Some(ssl) = unsafe { c.ssl.as_ref() } {
        o.ssl = true;
        o.ssl_handshaked = ssl.handshaked() != 0;
    }
}
