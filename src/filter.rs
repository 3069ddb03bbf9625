//! The response header `upstream_cause_header NAME: <code>`.

use ngx::ffi::{
    ngx_http_output_header_filter_pt, ngx_http_request_t, ngx_int_t, ngx_list_push, ngx_str_t, ngx_table_elt_t,
    NGX_ERROR,
};
use ngx::http::HttpModuleLocationConf;

use crate::{ctx, Module};

pub static mut NEXT: ngx_http_output_header_filter_pt = None;

fn next(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: NEXT was set once in postconfiguration, before any request.
    match unsafe { NEXT } {
        // SAFETY: the next filter in nginx's chain, called as nginx would.
        Some(f) => unsafe { f(r) },
        None => NGX_ERROR as ngx_int_t,
    }
}

pub unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls header filters with a live request.
    if let Some(req) = unsafe { r.as_ref() } {
        // Only a response to a proxied request can carry a cause, or a
        // header of our name from an upstream.
        if req.main == r && !req.upstream.is_null() {
            if let Some(lcf) = Module::location_conf(req).filter(|l| l.header.len != 0) {
                crate::guard((), || add_header(r, lcf));
            }
        }
    }
    next(r)
}

/// The request's headers are changed through `r`, with no reference to the
/// request held: a list allocation that fails logs, and the log tap then
/// reads the same request.
fn add_header(r: *mut ngx_http_request_t, lcf: &crate::conf::LocConf) {
    let Some(name) = lcf.header_name() else { return };
    // SAFETY: the live request's response headers.
    strip(unsafe { &raw mut (*r).headers_out.headers.part }, name);
    if !lcf.enabled() {
        return;
    }
    let cause = {
        // SAFETY: the live request, read only while `view` lives.
        let view = ctx::view(unsafe { &*r });
        if view.quiet() {
            return;
        }
        let Some((cause, _)) = view.final_cause() else {
            return;
        };
        cause
    };
    // SAFETY: the response header list of a live request.
    let h = unsafe { ngx_list_push(&raw mut (*r).headers_out.headers) }.cast::<ngx_table_elt_t>();
    // SAFETY: fresh list element, or null on allocation failure.
    if let Some(h) = unsafe { h.as_mut() } {
        h.hash = 1;
        h.key = lcf.header;
        h.value = ngx_str_t {
            len: cause.code().len(),
            data: cause.code().as_ptr().cast_mut(),
        };
        h.lowcase_key = core::ptr::null_mut();
        #[cfg(ngx_table_elt_next)]
        {
            h.next = core::ptr::null_mut();
        }
    }
}

/// Hides any header of our name that came from elsewhere (the upstream).
fn strip(first: *mut ngx::ffi::ngx_list_part_t, name: &[u8]) {
    let mut part = first;
    // SAFETY: the headers_out list of a live request: parts of valid elements.
    while let Some(p) = unsafe { part.as_mut() } {
        let elts = p.elts.cast::<ngx_table_elt_t>();
        for i in 0..p.nelts {
            // SAFETY: i < nelts.
            let h = unsafe { &mut *elts.add(i) };
            if h.hash != 0 && h.key.len == name.len() && h.key.as_bytes().eq_ignore_ascii_case(name) {
                h.hash = 0;
            }
        }
        part = p.next;
    }
}
