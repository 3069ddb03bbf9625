//! The panic guard every entry point from nginx runs its work under.

/// Runs `f`, turning a panic into `default` so that no unwinding ever
/// crosses into nginx's C frames. A caught panic is a bug of ours: it is
/// logged at `alert` and the request goes on unannotated.
pub fn guard<R>(default: R, f: impl FnOnce() -> R) -> R {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        // SAFETY: ngx_cycle is this process's live cycle, its log valid while it runs.
        if let Some(log) = unsafe { ngx::ffi::ngx_cycle.as_ref() }
            .map(|c| c.log)
            .filter(|l| !l.is_null())
        {
            ngx::ngx_log_error!(
                ngx::ffi::NGX_LOG_ALERT,
                log,
                "upstream_cause: internal error (a Rust panic was caught); the request is left unannotated"
            );
        }
        default
    })
}
