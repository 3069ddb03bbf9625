//! `$upstream_cause`, `$upstream_cause_list`, `$upstream_cause_detail`.

use ngx::ffi::{ngx_http_request_t, ngx_http_variable_t, ngx_int_t, ngx_variable_value_t, NGX_ERROR};
use ngx::ngx_string;

use super::ctx;
use crate::vars::{CAUSE, DETAIL, LIST};

const fn var(name: ngx::ffi::ngx_str_t, data: usize) -> ngx_http_variable_t {
    ngx_http_variable_t {
        name,
        set_handler: None,
        get_handler: Some(get),
        data,
        flags: ngx::ffi::NGX_HTTP_VAR_NOCACHEABLE as ngx::ffi::ngx_uint_t,
        index: 0,
    }
}

pub static mut VARS: [ngx_http_variable_t; 3] = [
    var(ngx_string!("upstream_cause"), CAUSE),
    var(ngx_string!("upstream_cause_list"), LIST),
    var(ngx_string!("upstream_cause_detail"), DETAIL),
];

fn value(r: &ngx_http_request_t, v: &mut ngx_variable_value_t, which: usize) -> ngx_int_t {
    if !super::conf::enabled(r) {
        return crate::vars::empty(v);
    }
    let view = ctx::view(r);
    let summary = view.summary(r);
    crate::vars::fill(r.pool, v, which, &summary, view.observed())
}

unsafe extern "C" fn get(r: *mut ngx_http_request_t, v: *mut ngx_variable_value_t, data: usize) -> ngx_int_t {
    crate::guard(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx evaluates variables of a live request, into a valid
        // value to fill.
        match unsafe { (r.as_ref(), v.as_mut()) } {
            (Some(r), Some(v)) => value(r, v, data),
            _ => NGX_ERROR as ngx_int_t,
        }
    })
}
