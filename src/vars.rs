//! What the three variables' values are, for any module's summary:
//! `$upstream_cause`, `$upstream_cause_list`, `$upstream_cause_detail`.
//! HTTP's and stream's variables share nginx's value type; each module
//! only finds its summary and the pool its values go in.

use ngx::core::Pool;
use ngx::ffi::{ngx_int_t, ngx_pool_t, ngx_variable_value_t, NGX_ERROR, NGX_OK};
use upstream_cause_core::render::{render_list, Counter, FixedBuf, Sink};
use upstream_cause_core::{Cause, Observed, Summary};

pub const CAUSE: usize = 0;
pub const LIST: usize = 1;
pub const DETAIL: usize = 2;

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

/// An empty value (the module is off where the variable is read).
pub fn empty(v: &mut ngx_variable_value_t) -> ngx_int_t {
    set_static(v, b"");
    NGX_OK as ngx_int_t
}

/// A value rendered into `n` bytes of `pool` by `render`.
fn set_rendered(
    pool: *mut ngx_pool_t,
    v: &mut ngx_variable_value_t,
    n: usize,
    render: impl FnOnce(&mut FixedBuf<'_>),
) -> ngx_int_t {
    if n == 0 {
        return empty(v);
    }
    // SAFETY: the live request's or session's pool, which outlives the
    // variable's use.
    let pool = unsafe { Pool::from_ngx_pool(pool) };
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

/// Variable `which`'s value from a summary and the records it was made
/// from; what is rendered goes in `pool`.
pub fn fill<U: Copy>(
    pool: *mut ngx_pool_t,
    v: &mut ngx_variable_value_t,
    which: usize,
    summary: &Summary<U>,
    observed: Option<&Observed<U>>,
) -> ngx_int_t {
    match which {
        CAUSE => {
            set_static(v, summary.cause().map_or("", Cause::code).as_bytes());
            NGX_OK as ngx_int_t
        }
        LIST => {
            let mut n = Counter::default();
            render_list(&mut n, summary.entries());
            set_rendered(pool, v, n.0, |out| render_list(out, summary.entries()))
        }
        _ => {
            let detail = match (summary.detail_at(), observed) {
                (Some(at), Some(o)) => o.detail(at),
                _ => &[],
            };
            set_rendered(pool, v, detail.len(), |out| out.put(detail))
        }
    }
}

/// Registers a module's table of variables (`$vars`, a `static mut` array
/// of its protocol's variable type) with nginx's `$add`
/// (`ngx_http_add_variable`, `ngx_stream_add_variable`), at
/// preconfiguration; an `ngx_int_t`.
macro_rules! add_variables {
    ($cf:expr, $vars:path, $add:path) => {{
        let mut rc = ngx::core::Status::NGX_OK.into();
        // SAFETY: the table is only touched here, single-threaded, at
        // configuration time.
        for v in unsafe { (*core::ptr::addr_of_mut!($vars)).iter_mut() } {
            // SAFETY: nginx's cf; the name is a static string.
            let var = unsafe { $add($cf, &mut v.name, v.flags) };
            // SAFETY: null or a fresh variable slot.
            let Some(var) = (unsafe { var.as_mut() }) else {
                rc = ngx::core::Status::NGX_ERROR.into();
                break;
            };
            var.get_handler = v.get_handler;
            var.data = v.data;
        }
        rc
    }};
}
pub(crate) use add_variables;
