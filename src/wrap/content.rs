//! Wrapping the content handler of every location where the module is on
//! (proxy_pass and the other `*_pass` set one), so that the log tap is on
//! the request's log before nginx's upstream code runs, whatever it does
//! first (resolve, pick a peer).

use ngx::ffi::{
    ngx_conf_t, ngx_http_handler_pt, ngx_http_request_t, ngx_int_t, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_LOG_WARN,
};
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule};

use super::{wrap, wrappers, Slots, N};

/// The content handlers of the locations we arm the tap for.
static HANDLERS: Slots<ngx_http_handler_pt> = Slots::new();
type HandlerFn = unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t;
static CONTENT_WRAPPERS: [HandlerFn; N] = wrappers!(content_handler);

fn handler_addr(f: HandlerFn) -> usize {
    f as usize
}

/// At merge time of a location where `upstream_cause` is on: puts the tap
/// in front of the location's content handler.
pub fn wrap_content_handler(cf: &mut ngx_conf_t) {
    // During merge, cf->ctx's loc_conf is the location being merged.
    let Some(clcf) = NgxHttpCoreModule::location_conf_mut(cf) else {
        return;
    };
    if wrap(&HANDLERS, &mut clcf.handler, &CONTENT_WRAPPERS, handler_addr).is_err() {
        ngx::ngx_conf_log_error!(
            NGX_LOG_WARN,
            cf,
            "upstream_cause: too many kinds of content handlers, resolver failures in location \"{}\" are not heard",
            String::from_utf8_lossy(clcf.name.as_bytes())
        );
    }
}

unsafe extern "C" fn content_handler<const I: usize>(r: *mut ngx_http_request_t) -> ngx_int_t {
    let Some(Some(orig)) = HANDLERS.get(I) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    crate::guard((), || {
        // SAFETY: nginx calls content handlers with a live request, whose
        // connection and its log are live.
        if let Some(log) = unsafe { r.as_ref().and_then(|req| (*req.connection).log.as_mut()) } {
            crate::tap::arm(log);
        }
    });
    // SAFETY: the location's own content handler, called as nginx would.
    unsafe { orig(r) }
}
