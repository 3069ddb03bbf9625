//! `$upstream_cause`, `$upstream_cause_list`, `$upstream_cause_detail`.

use ngx::core::Pool;
use ngx::ffi::{ngx_http_request_t, ngx_http_variable_t, ngx_int_t, ngx_variable_value_t, NGX_ERROR, NGX_OK};
use ngx::ngx_string;
use upstream_cause_core::render::{render_list, Counter, FixedBuf, Sink};

use super::ctx;

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

/// A value rendered into `n` bytes of the request pool by `render`.
fn set_rendered(
    r: &ngx_http_request_t,
    v: &mut ngx_variable_value_t,
    n: usize,
    render: impl FnOnce(&mut FixedBuf<'_>),
) -> ngx_int_t {
    if n == 0 {
        set_static(v, b"");
        return NGX_OK as ngx_int_t;
    }
    // SAFETY: the live request's pool, which outlives the variable's use.
    let pool = unsafe { Pool::from_ngx_pool(r.pool) };
    let p = pool.alloc_unaligned(n).cast::<u8>();
    if p.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    // SAFETY: p points to n fresh bytes.
    let mut out = FixedBuf::new(unsafe { core::slice::from_raw_parts_mut(p, n) });
    render(&mut out);
    set(v, p, out.len());
    NGX_OK as ngx_int_t
}

fn value(r: &ngx_http_request_t, v: &mut ngx_variable_value_t, which: usize) -> ngx_int_t {
    if !super::conf::enabled(r) {
        set_static(v, b"");
        return NGX_OK as ngx_int_t;
    }
    let view = ctx::view(r);
    let summary = view.summary(r);
    match which {
        CAUSE => {
            set_static(v, summary.cause().map_or("", |c| c.code()).as_bytes());
            NGX_OK as ngx_int_t
        }
        LIST => {
            let mut n = Counter::default();
            render_list(&mut n, summary.entries());
            set_rendered(r, v, n.0, |out| render_list(out, summary.entries()))
        }
        _ => {
            let detail = match (summary.detail_at(), view.observed()) {
                (Some(at), Some(o)) => o.detail(at),
                _ => &[],
            };
            set_rendered(r, v, detail.len(), |out| out.put(detail))
        }
    }
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
