//! `upstream_cause_status`: the live view. nginx's upstream groups (HTTP's
//! and stream's) with their balancers' peer states now, joined with what
//! the zones recorded (`crate::zone::snapshot`), as the core's document
//! (`upstream_cause_core::live`): JSON, or the HTML page for a browser.
//! GET and HEAD only.

use ngx::core::Status;
use ngx::ffi::{ngx_cycle_t, ngx_http_request_t, ngx_http_upstream_srv_conf_t, ngx_int_t, ngx_str_t};
use ngx::http::{HttpModuleMainConf, NgxHttpUpstreamModule, Request};
use upstream_cause_core::live::doc::{build, to_json, GroupConf, Inputs, PeerConf, View};
use upstream_cause_core::live::{page, Kind};

pub unsafe extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::guard(Status::NGX_ERROR.into(), || {
        // SAFETY: nginx calls content handlers with a live request.
        let req = unsafe { Request::from_ngx_http_request(r) };
        serve(req).into()
    })
}

fn serve(req: &mut Request) -> Status {
    if let Some(rc) = super::metrics::get_or_head(req) {
        return rc;
    }
    let Some(snap) = crate::zone::snapshot() else {
        return Status::NGX_ERROR;
    };
    let r: &ngx_http_request_t = req.as_ref();
    let json = wants_json(req);
    let mut groups = http_groups(r);
    #[cfg(ngx_feature = "stream")]
    groups.extend(stream::groups());
    let doc = build(&Inputs {
        source: "nginx",
        now_ms: crate::zone::now_ms(),
        zones: snap.zones,
        started_ms: snap.started_ms,
        groups,
        series: &snap.series,
        peers: &snap.peers,
        recent: &snap.recent,
    });
    // (never cached: it is the state now; its form depends on Accept)
    if req.add_header_out("Cache-Control", "no-store").is_none() || req.add_header_out("Vary", "Accept").is_none() {
        return Status::NGX_ERROR;
    }
    if json {
        let body = to_json(&doc);
        // serde writes UTF-8
        let body = String::from_utf8_lossy(&body);
        return super::metrics::send(req, b"application/json", &body);
    }
    if req.add_header_out("Content-Security-Policy", page::CSP).is_none()
        || req.add_header_out("X-Content-Type-Options", "nosniff").is_none()
    {
        return Status::NGX_ERROR;
    }
    super::metrics::send(req, b"text/html; charset=utf-8", &page::render(&doc))
}

/// JSON or the page: `?format=json` or `?format=html` decides; else an
/// `Accept` that names `text/html` (a browser) gets the page, and
/// anything else (`application/json`, `*/*`, none) the JSON.
fn wants_json(req: &Request) -> bool {
    let r: &ngx_http_request_t = req.as_ref();
    let mut value = ngx_str_t::default();
    // SAFETY: nginx's own argument lookup on the live request; it writes
    // the value (pointing into the request's args) into `value`.
    let found = unsafe {
        ngx::ffi::ngx_http_arg(
            core::ptr::from_ref(r).cast_mut(),
            b"format".as_ptr().cast_mut(),
            6,
            &mut value,
        )
    };
    if found == Status::NGX_OK.0 {
        match value.as_bytes() {
            b"json" => return true,
            b"html" => return false,
            _ => {}
        }
    }
    let html = req.headers_in_iterator().any(|(name, value)| {
        name.as_bytes().eq_ignore_ascii_case(b"accept")
            && value
                .as_bytes()
                .windows(9)
                .any(|w| w.eq_ignore_ascii_case(b"text/html"))
    });
    !html
}

/// The running configuration's HTTP groups, with their peers as their
/// balancers hold them now.
fn http_groups(r: &ngx_http_request_t) -> Vec<GroupConf> {
    let Some(umcf) = NgxHttpUpstreamModule::main_conf(r) else {
        return Vec::new();
    };
    // SAFETY: `upstreams` is an array of group pointers of the running
    // configuration.
    let upstreams = unsafe { umcf.upstreams.as_slice::<*mut ngx_http_upstream_srv_conf_t>() };
    upstreams
        .iter()
        // SAFETY: each a live group of the running configuration.
        .filter_map(|&us| unsafe { us.as_mut() })
        .map(|us| {
            let name = super::count::group_label(us).as_bytes().to_vec();
            group(Kind::Http, name, super::saturation::snapshot(us))
        })
        .collect()
}

/// A group as the document takes it, from what its balancer's peers
/// gave (`snapshot`: whether from its zone, and the peers).
fn group(kind: Kind, name: Vec<u8>, snapshot: Option<(bool, Vec<PeerConf>)>) -> GroupConf {
    let (view, peers) = match snapshot {
        Some((true, peers)) => (View::Zone, peers),
        Some((false, peers)) => (View::Worker, peers),
        None => (View::Unknown, Vec::new()),
    };
    GroupConf {
        kind,
        name,
        view,
        peers,
    }
}

/// The module of the running cycle named `name` (the stream modules may be
/// in a `.so` this one must not link to: they are found by name).
#[cfg_attr(not(ngx_feature = "stream"), allow(dead_code))]
fn module_named<'a>(cycle: &'a ngx_cycle_t, name: &[u8]) -> Option<&'a ngx::ffi::ngx_module_t> {
    crate::zone::modules(cycle).find(|(_, n)| *n == name).map(|(m, _)| m)
}

/// Stream's groups, read through stream's configuration by its modules'
/// names (no stream symbol is referenced).
#[cfg(ngx_feature = "stream")]
mod stream {
    use ngx::ffi::{
        ngx_stream_conf_ctx_t, ngx_stream_upstream_main_conf_t, ngx_stream_upstream_srv_conf_t, ngx_uint_t,
        NGX_STREAM_UPSTREAM_CREATE,
    };
    use upstream_cause_core::live::doc::GroupConf;
    use upstream_cause_core::live::Kind;

    use super::*;

    #[allow(dead_code)]
    mod rr {
        crate::saturation::round_robin!(
            ngx_stream_upstream_rr_peers_t,
            ngx_stream_upstream_rr_peer_t,
            ngx_stream_upstream_srv_conf_t,
            "stream_upstream_zone"
        );
        use ngx::ffi::{ngx_stream_upstream_rr_peer_t, ngx_stream_upstream_rr_peers_t, ngx_stream_upstream_srv_conf_t};
    }

    pub fn groups() -> Vec<GroupConf> {
        // SAFETY: in a worker, ngx_cycle is its live cycle.
        let Some(cycle) = (unsafe { ngx::ffi::ngx_cycle.as_ref() }) else {
            return Vec::new();
        };
        let (Some(core), Some(upstream)) = (
            module_named(cycle, b"ngx_stream_module"),
            module_named(cycle, b"ngx_stream_upstream_module"),
        ) else {
            return Vec::new();
        };
        // SAFETY: the cycle's configuration contexts, one per core module
        // index; stream's is null or its ngx_stream_conf_ctx_t.
        let ctx = unsafe {
            (*cycle.conf_ctx.add(core.index))
                .cast::<ngx_stream_conf_ctx_t>()
                .as_ref()
        };
        let Some(ctx) = ctx else { return Vec::new() };
        // SAFETY: stream's main configurations, one per stream module's
        // ctx_index; the upstream module's is its main conf.
        let umcf = unsafe {
            (*ctx.main_conf.add(upstream.ctx_index))
                .cast::<ngx_stream_upstream_main_conf_t>()
                .as_ref()
        };
        let Some(umcf) = umcf else { return Vec::new() };
        // SAFETY: an array of group pointers of the running configuration.
        let upstreams = unsafe { umcf.upstreams.as_slice::<*mut ngx_stream_upstream_srv_conf_t>() };
        upstreams
            .iter()
            // SAFETY: each a live group of the running configuration.
            .filter_map(|&us| unsafe { us.as_mut() })
            .map(|us| {
                let name = crate::zone::HostPort::group(
                    us.host.as_bytes(),
                    us.port,
                    us.flags & NGX_STREAM_UPSTREAM_CREATE as ngx_uint_t != 0,
                )
                .as_bytes()
                .to_vec();
                group(Kind::Stream, name, rr::snapshot(us))
            })
            .collect()
    }
}
