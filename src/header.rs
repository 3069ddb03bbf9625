//! The response header `upstream_cause_header NAME: <code>`.

use ngx::ffi::{
    ngx_http_output_header_filter_pt, ngx_http_request_t, ngx_int_t, ngx_list_part_t, ngx_list_push, ngx_str_t,
    ngx_table_elt_t, NGX_ERROR,
};

use crate::conf::LocConf;
use crate::ctx;

pub static mut NEXT: ngx_http_output_header_filter_pt = None;

pub unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls header filters with a live request; the reference
    // ends before the next filter runs.
    if let Some(req) = unsafe { r.as_mut() } {
        // Only a response to a proxied request can carry a cause, or a
        // header of our name from an upstream.
        if core::ptr::eq(req.main, r) && !req.upstream.is_null() {
            if let Some(lcf) = LocConf::of(req).filter(|l| l.header().is_some()) {
                crate::guard((), || add_header(req, lcf));
            }
        }
    }
    // SAFETY: NEXT was set once in postconfiguration, before any request.
    match unsafe { NEXT } {
        // SAFETY: the next filter in nginx's chain, called as nginx would.
        Some(next) => unsafe { next(r) },
        None => NGX_ERROR as ngx_int_t,
    }
}

fn add_header(r: &mut ngx_http_request_t, lcf: &LocConf) {
    let Some(&name) = lcf.header() else { return };
    strip(&mut r.headers_out.headers.part, name.as_bytes());
    if !lcf.enabled() {
        return;
    }
    if ctx::quiet(r) {
        return;
    }
    add_cause(r, name);
}

/// Adds the header with the request's cause, if it has one.
#[cold]
#[inline(never)]
fn add_cause(r: &mut ngx_http_request_t, name: ngx_str_t) {
    let Some(cause) = ctx::view(r).summary(r).cause() else {
        return;
    };
    // A list allocation that fails logs: the tap must not read the request
    // it finds there while it is borrowed here.
    // SAFETY: the response header list of the live request.
    let h = crate::tap::suspended(|| unsafe { ngx_list_push(&mut r.headers_out.headers) }).cast::<ngx_table_elt_t>();
    // SAFETY: fresh list element, or null on allocation failure.
    if let Some(h) = unsafe { h.as_mut() } {
        h.hash = 1;
        h.key = name;
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
fn strip(first: &mut ngx_list_part_t, name: &[u8]) {
    let mut part = Some(first);
    while let Some(p) = part {
        let elts = if p.elts.is_null() {
            &mut []
        } else {
            // SAFETY: a part of the live request's headers_out list: nelts
            // valid elements.
            unsafe { core::slice::from_raw_parts_mut(p.elts.cast::<ngx_table_elt_t>(), p.nelts) }
        };
        for h in elts {
            if h.hash != 0 && h.key.len == name.len() && h.key.as_bytes().eq_ignore_ascii_case(name) {
                h.hash = 0;
            }
        }
        // SAFETY: null or the list's next part.
        part = unsafe { p.next.as_mut() };
    }
}
