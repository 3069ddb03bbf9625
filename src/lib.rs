//! ngx-upstream-cause: tells why nginx answered 502/504.
//!
//! The classification is in the `upstream-cause-core` crate, which has no
//! nginx types. This crate is the nginx glue: `http/` is the HTTP module
//! (`ngx_http_upstream_cause_module`); the files beside it are what any
//! module of the crate shares (the panic guard, the tables of wrapped
//! callbacks, the log tap, the shared zone, the directives' common parsing
//! and messages, tracing into nginx's debug log).

mod conf;
mod guard;
mod http;
mod slots;
mod tap;
mod trace;
mod zone;

pub(crate) use guard::guard;
pub use http::ngx_http_upstream_cause_module;

// The `ngx_modules` table nginx's `load_module` looks for in a cdylib. In
// nginx's own build (`config`) nginx generates it, so it must not be here.
#[cfg(feature = "export-modules")]
ngx::ngx_modules!(ngx_http_upstream_cause_module);
