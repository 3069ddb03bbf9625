//! `$upstream_cause`, `$upstream_cause_list`, `$upstream_cause_detail`.

use ngx::core::Pool;
use ngx::ffi::{ngx_http_request_t, ngx_http_variable_t, ngx_int_t, ngx_variable_value_t, NGX_ERROR, NGX_OK};
use ngx::ngx_string;
use upstream_cause_core::render::{render_list, Counter, Entry, FixedBuf};

use crate::ctx::{self, Ctx};

const CAUSE: usize = 0;
const LIST: usize = 1;
const DETAIL: usize = 2;

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

fn set(v: &mut ngx_variable_value_t, data: *mut u8, len: usize) {
    v.set_valid(1);
    v.set_no_cacheable(1);
    v.set_not_found(0);
    v.set_len(u32::try_from(len).unwrap_or(0));
    v.data = data;
}

fn set_static(v: &mut ngx_variable_value_t, s: &'static [u8]) {
    // nginx never writes through a variable's data.
    set(v, s.as_ptr().cast_mut(), s.len());
}

/// Copies bytes into the request pool for a variable value.
fn set_copy(r: *mut ngx_http_request_t, v: &mut ngx_variable_value_t, bytes: &[u8]) -> ngx_int_t {
    if bytes.is_empty() {
        set_static(v, b"");
        return NGX_OK as ngx_int_t;
    }
    // SAFETY: r is live; its pool outlives the variable's use.
    let pool = unsafe { Pool::from_ngx_pool((*r).pool) };
    let p = pool.alloc_unaligned(bytes.len()).cast::<u8>();
    if p.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    // SAFETY: p has room for bytes.len() bytes.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    set(v, p, bytes.len());
    NGX_OK as ngx_int_t
}

fn value(r: *mut ngx_http_request_t, v: &mut ngx_variable_value_t, which: usize, ctx: &Ctx) -> ngx_int_t {
    match which {
        CAUSE => {
            let code = ctx.final_cause().map_or("", |(c, _)| c.code());
            set_static(v, code.as_bytes());
            NGX_OK as ngx_int_t
        }
        LIST => {
            let mut buf = [Entry::Separator; 64];
            let entries = ctx.entries(&mut buf);
            let mut n = Counter::default();
            render_list(&mut n, entries);
            if n.0 == 0 {
                set_static(v, b"");
                return NGX_OK as ngx_int_t;
            }
            // SAFETY: r is live.
            let pool = unsafe { Pool::from_ngx_pool((*r).pool) };
            let p = pool.alloc_unaligned(n.0).cast::<u8>();
            if p.is_null() {
                return NGX_ERROR as ngx_int_t;
            }
            // SAFETY: p points to n.0 fresh bytes.
            let out = unsafe { core::slice::from_raw_parts_mut(p, n.0) };
            let mut fb = FixedBuf::new(out);
            render_list(&mut fb, entries);
            set(v, p, fb.len());
            NGX_OK as ngx_int_t
        }
        _ => {
            let detail = match ctx.final_cause() {
                Some((c, idx)) if c.is_gateway_failure() => ctx.detail_of(idx),
                _ => &[],
            };
            set_copy(r, v, detail)
        }
    }
}

unsafe extern "C" fn get(r: *mut ngx_http_request_t, v: *mut ngx_variable_value_t, data: usize) -> ngx_int_t {
    crate::guard(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx passes a valid value to fill.
        let Some(v) = (unsafe { v.as_mut() }) else {
            return NGX_ERROR as ngx_int_t;
        };
        match Some(r).filter(|_| crate::enabled_for(r)) {
            // SAFETY: nginx evaluates variables of a live request.
            Some(r) => match unsafe { r.as_ref() } {
                Some(req) => value(r, v, data, &ctx::view(req)),
                None => NGX_ERROR as ngx_int_t,
            },
            None => {
                set_static(v, b"");
                NGX_OK as ngx_int_t
            }
        }
    })
}
