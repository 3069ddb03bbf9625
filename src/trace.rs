//! Forwards the core's `tracing` events to nginx's debug log.
//!
//! The core crate has no nginx types; it reports its decisions as `tracing`
//! events. This subscriber writes them to the log of the request being
//! worked on (set with [`with_log`]) when that log has `debug_http` on. It
//! is only installed when nginx was built `--with-debug`; otherwise no
//! subscriber exists and every event site is a disabled no-op.

use core::cell::Cell;
use core::fmt::{self, Write};
use core::ptr;

use ngx::ffi::ngx_log_t;
use ngx::log::DebugMask;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use upstream_cause_core::render::FixedBuf;

thread_local! {
    static CURRENT: Cell<*mut ngx_log_t> = const { Cell::new(ptr::null_mut()) };
}

/// Runs `f` with `log` as the destination of the core's events.
pub fn with_log<R>(log: *mut ngx_log_t, f: impl FnOnce() -> R) -> R {
    if !ngx::log::DEBUG {
        return f();
    }
    let prev = CURRENT.with(|c| c.replace(log));
    let r = f();
    CURRENT.with(|c| c.set(prev));
    r
}

/// Installs the subscriber once per process, if nginx logs at debug at all.
pub fn install() {
    if ngx::log::DEBUG {
        // An error means a subscriber is already set (a reload): keep it.
        let _ = tracing::dispatcher::set_global_default(tracing::Dispatch::new(NginxDebugLog));
    }
}

fn current_debug_log() -> Option<*mut ngx_log_t> {
    let log = CURRENT.with(Cell::get);
    // SAFETY: `with_log` only sets logs of live requests for its duration.
    let level = unsafe { log.as_ref() }?.log_level;
    ngx::log::check_mask(DebugMask::Http, level).then_some(log)
}

struct NginxDebugLog;

impl Subscriber for NginxDebugLog {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_event() {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        current_debug_log().is_some()
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(log) = current_debug_log() else { return };
        let mut raw = [0u8; 512];
        let mut line = Line(FixedBuf::new(&mut raw));
        event.record(&mut line);
        // SAFETY: a live request's log (see `with_log`).
        unsafe { ngx::log::log_debug(log, 0, line.0.as_bytes()) };
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// `message key=value ...`, cut at the buffer's end.
struct Line<'a>(FixedBuf<'a>);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let sep = if self.0.is_empty() { "" } else { " " };
        let _ = if field.name() == "message" {
            write!(self.0, "{sep}{value:?}")
        } else {
            write!(self.0, "{sep}{}={value:?}", field.name())
        };
    }
}
