//! The response headers: `upstream_cause_header NAME: <code>`, and
//! `Proxy-Status` (RFC 9209) with nginx's member appended to the
//! upstream's own.

use ngx::ffi::{
    ngx_http_output_header_filter_pt, ngx_http_request_t, ngx_int_t, ngx_list_part_t, ngx_list_push, ngx_str_t,
    ngx_table_elt_t, ngx_uint_t, NGX_ERROR, NGX_LOG_INFO,
};
use upstream_cause_core::proxy_status::{is_list, render_member, Member};
use upstream_cause_core::render::{Counter, FixedBuf};
use upstream_cause_core::summary::Outcome;
use upstream_cause_core::{At, Message};

use super::conf::LocConf;
use super::ctx::{self, Upstream};

pub static mut NEXT: ngx_http_output_header_filter_pt = None;

static PROXY_STATUS: &[u8] = b"Proxy-Status";

pub unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls header filters with a live request; the reference
    // ends before the next filter runs.
    if let Some(req) = unsafe { r.as_mut() } {
        // Only a response to a proxied request can carry a cause, or a
        // header of our name from an upstream.
        if !req.upstream.is_null() && core::ptr::eq(req.main, r) {
            filter(req);
        }
    }
    // SAFETY: NEXT was set once in postconfiguration, before any request.
    match unsafe { NEXT } {
        // SAFETY: the next filter in nginx's chain, called as nginx would.
        Some(next) => unsafe { next(r) },
        None => NGX_ERROR as ngx_int_t,
    }
}

/// A proxied response's headers: ours hidden, the cause's added. (Out of
/// line: the filter itself stays a few instructions for the responses
/// that are not proxied.)
#[inline(never)]
fn filter(r: &mut ngx_http_request_t) {
    let Some(lcf) = LocConf::of(r).filter(|l| l.changes_headers()) else {
        return;
    };
    let header = lcf.header_hashed();
    if let Some((name, hash)) = header {
        // a header of our name from the upstream is hidden, always
        hide(&mut r.headers_out.headers.part, name.as_bytes(), hash);
    }
    if !lcf.enabled() || ctx::quiet(r) {
        return;
    }
    crate::guard((), || add(r, lcf, header.map(|(name, _)| *name)));
}

/// Adds the headers of the request's cause, if it has one.
#[cold]
#[inline(never)]
fn add(r: &mut ngx_http_request_t, lcf: &LocConf, header: Option<ngx_str_t>) {
    let (outcome, message) = {
        let view = ctx::view(r);
        let Some(outcome) = view.summary(r).outcome() else {
            return;
        };
        (outcome, view.observed().and_then(|o| o.message(outcome.at)))
    };
    if let Some(name) = header {
        let code = outcome.cause.code().as_bytes();
        push(r, name, str_of(code));
    }
    if let Some(&name) = lcf.proxy_status() {
        proxy_status(r, name, &outcome, message);
    }
}

/// `Proxy-Status`: the upstream's own members, if they form a valid list,
/// then nginx's.
fn proxy_status(r: &mut ngx_http_request_t, name: ngx_str_t, outcome: &Outcome<Upstream>, message: Option<Message>) {
    let state = match outcome.at {
        At::Attempt(idx) => ctx::states(r).get(idx),
        At::BeforeAny => None,
    };
    let member = Member {
        name: name.as_bytes(),
        cause: outcome.cause,
        message,
        // SAFETY: a state's peer is null or a string valid for the request.
        next_hop: state.and_then(|s| unsafe { s.peer.as_ref() }).map(|p| p.as_bytes()),
        received_status: state.and_then(|s| u16::try_from(s.status).ok()),
    };
    let mut ours = Counter::default();
    render_member(&mut ours, &member);
    let theirs: usize = upstream_values(&mut r.headers_out.headers.part)
        .map(|h| h.value.len + 2)
        .sum();
    // SAFETY: the live request's pool, which outlives the response's headers.
    let pool = unsafe { ngx::core::Pool::from_ngx_pool(r.pool) };
    let total = theirs + ours.0;
    let p = crate::tap::suspended(|| pool.alloc_unaligned(total)).cast::<u8>();
    if p.is_null() {
        return;
    }
    // SAFETY: `total` fresh bytes of the request's pool.
    let buf = unsafe { core::slice::from_raw_parts_mut(p, total) };
    let mut len = 0;
    for h in upstream_values(&mut r.headers_out.headers.part) {
        let v = h.value.as_bytes();
        if len > 0 {
            buf[len..len + 2].copy_from_slice(b", ");
            len += 2;
        }
        buf[len..len + v.len()].copy_from_slice(v);
        len += v.len();
        h.hash = 0; // replaced by ours below
    }
    if len > 0 && !is_list(&buf[..len]) {
        // SAFETY: the live request's connection log.
        let log = unsafe { (*r.connection).log };
        crate::tap::suspended(|| {
            ngx::ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "upstream_cause: the upstream's Proxy-Status is not a valid Structured Fields list: dropped"
            );
        });
        len = 0;
    }
    if len > 0 {
        buf[len..len + 2].copy_from_slice(b", ");
        len += 2;
    }
    let mut out = FixedBuf::new(&mut buf[len..]);
    render_member(&mut out, &member);
    len += out.len();
    let value = ngx_str_t { len, data: p };
    push(r, str_of(PROXY_STATUS), value);
}

/// The upstream's `Proxy-Status` field lines that are not empty.
fn upstream_values(first: &mut ngx_list_part_t) -> impl Iterator<Item = &mut ngx_table_elt_t> {
    headers(first).filter(|h| h.hash != 0 && h.value.len > 0 && h.key.as_bytes().eq_ignore_ascii_case(PROXY_STATUS))
}

/// A static string as nginx's (nginx never writes through a header's data).
fn str_of(s: &'static [u8]) -> ngx_str_t {
    ngx_str_t {
        len: s.len(),
        data: s.as_ptr().cast_mut(),
    }
}

/// Adds a response header.
fn push(r: &mut ngx_http_request_t, key: ngx_str_t, value: ngx_str_t) {
    // A list allocation that fails logs: the tap must not read the request
    // it finds there while it is borrowed here.
    // SAFETY: the response header list of the live request.
    let h = crate::tap::suspended(|| unsafe { ngx_list_push(&mut r.headers_out.headers) }).cast::<ngx_table_elt_t>();
    // SAFETY: fresh list element, or null on allocation failure.
    if let Some(h) = unsafe { h.as_mut() } {
        h.hash = 1;
        h.key = key;
        h.value = value;
        h.lowcase_key = core::ptr::null_mut();
        #[cfg(ngx_table_elt_next)]
        {
            h.next = core::ptr::null_mut();
        }
    }
}

/// Every response header, across the list's parts.
fn headers(first: &mut ngx_list_part_t) -> impl Iterator<Item = &mut ngx_table_elt_t> {
    let mut part = Some(first);
    core::iter::from_fn(move || {
        let p = part.take()?;
        let elts: &mut [ngx_table_elt_t] = if p.elts.is_null() {
            &mut []
        } else {
            // SAFETY: a part of the live request's headers_out list: nelts
            // valid elements.
            unsafe { core::slice::from_raw_parts_mut(p.elts.cast::<ngx_table_elt_t>(), p.nelts) }
        };
        // SAFETY: null or the list's next part.
        part = unsafe { p.next.as_mut() };
        Some(elts)
    })
    .flatten()
}

/// Hides any header of our name that came from the upstream. Every
/// proxied response passes here: a plain loop over the parts, and a
/// header's name is compared only when its hash is the one nginx's
/// upstream modules give our name (`hash`; their copies of a received
/// header keep it).
#[inline]
fn hide(first: &mut ngx_list_part_t, name: &[u8], hash: ngx_uint_t) {
    let mut part = Some(first);
    while let Some(p) = part {
        if !p.elts.is_null() {
            // SAFETY: a part of the live request's headers_out list: nelts
            // valid elements.
            let elts = unsafe { core::slice::from_raw_parts_mut(p.elts.cast::<ngx_table_elt_t>(), p.nelts) };
            for h in elts {
                if h.hash == hash && h.key.len == name.len() {
                    hide_named(h, name);
                }
            }
        }
        // SAFETY: null or the list's next part.
        part = unsafe { p.next.as_mut() };
    }
}

/// Hides `h` if its name is `name` (its hash and length are).
#[cold]
#[inline(never)]
fn hide_named(h: &mut ngx_table_elt_t, name: &[u8]) {
    if h.key.as_bytes().eq_ignore_ascii_case(name) {
        h.hash = 0;
    }
}
