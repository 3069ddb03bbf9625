//! `upstream_cause_metrics`: the location that serves the counters'
//! scrape (rendered by `crate::zone`), in Prometheus text format 0.0.4,
//! GET and HEAD only.

use core::ptr;

use ngx::core::{Buffer, Status};
use ngx::ffi::{
    ngx_http_request_t, ngx_int_t, ngx_str_t, ngx_uint_t, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_NOT_ALLOWED,
};
use ngx::http::Request;
use upstream_cause_core::render::Sink;

pub unsafe extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::guard(Status::NGX_ERROR.into(), || {
        // SAFETY: nginx calls content handlers with a live request.
        let req = unsafe { Request::from_ngx_http_request(r) };
        scrape(req).into()
    })
}

/// GET and HEAD only (405 otherwise), the request body discarded: `None`
/// to go on, else what to answer.
pub(super) fn get_or_head(req: &mut Request) -> Option<Status> {
    let r: &mut ngx_http_request_t = req.as_mut();
    if r.method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as ngx_uint_t == 0 {
        return Some(Status(NGX_HTTP_NOT_ALLOWED as ngx_int_t));
    }
    let rc = req.discard_request_body();
    (rc != Status::NGX_OK).then_some(rc)
}

fn scrape(req: &mut Request) -> Status {
    if let Some(rc) = get_or_head(req) {
        return rc;
    }
    let mut text = Text(Vec::with_capacity(4096));
    if crate::zone::render(&mut text).is_none() {
        return Status::NGX_ERROR;
    }
    // Label values are nginx's bytes (group names, addresses, a client's
    // Host under `proxy_pass http://$host`), not always UTF-8 as the
    // format wants: what is not is replaced, not refused.
    let body = String::from_utf8_lossy(&text.0);
    send(req, b"text/plain; version=0.0.4", &body)
}

/// Answers 200 with `body` of type `ct` (its other headers already set).
pub(super) fn send(req: &mut Request, ct: &'static [u8], body: &str) -> Status {
    req.set_status(ngx::http::HTTPStatus::OK);
    req.set_content_length_n(body.len());
    let r: &mut ngx_http_request_t = req.as_mut();
    // nginx never writes through the type's data.
    r.headers_out.content_type = ngx_str_t {
        len: ct.len(),
        data: ct.as_ptr().cast_mut(),
    };
    r.headers_out.content_type_len = ct.len();
    let rc = req.send_header();
    if rc == Status::NGX_ERROR || rc.0 > Status::NGX_OK.0 || req.header_only() {
        return rc;
    }
    let Some(mut buf) = req.pool().create_buffer_from_str(body) else {
        return Status::NGX_ERROR;
    };
    buf.set_last_buf(req.is_main());
    buf.set_last_in_chain(true);
    let mut out = ngx::ffi::ngx_chain_t {
        buf: buf.as_ngx_buf_mut(),
        next: ptr::null_mut(),
    };
    req.output_filter(&mut out)
}

struct Text(Vec<u8>);

impl Sink for Text {
    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}
