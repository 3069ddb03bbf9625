//! ngx-upstream-cause: tells why nginx answered 502/504.
//!
//! The classification is in the `upstream-cause-core` crate, which has no
//! nginx types. This crate is the nginx glue: `http/` is the HTTP module
//! (`ngx_http_upstream_cause_module`, feature `http`), `stream/` the
//! stream one (`ngx_stream_upstream_cause_module`, feature `stream`, built
//! into its own `.so` by the `stream/` package); the files beside them
//! are what both share (the panic guard, the tables of wrapped callbacks,
//! the log tap, the shared zone, the directives' common parsing and
//! messages, tracing into nginx's debug log).
//!
//! Each `.so` holds one module's code only: the HTTP one must load into an
//! nginx whose stream module is dynamic and not loaded (or absent), where
//! a reference to a stream symbol would fail `load_module`.

mod conf;
mod guard;
#[cfg(feature = "http")]
mod http;
mod peer;
mod saturation;
mod slots;
// Without stream in the nginx it is built against, there is no stream
// module to build.
#[cfg(all(feature = "stream", ngx_feature = "stream"))]
mod stream;
mod tap;
// (the core's decisions in nginx's debug_http log)
#[cfg(feature = "http")]
mod trace;
mod vars;
mod zone;

pub(crate) use guard::guard;
#[cfg(feature = "http")]
pub use http::ngx_http_upstream_cause_module;
#[cfg(all(feature = "stream", ngx_feature = "stream"))]
pub use stream::ngx_stream_upstream_cause_module;

// The `ngx_modules` table nginx's `load_module` looks for in a cdylib (the
// stream module's is in the `stream/` package). In nginx's own build
// (`config`) nginx generates it, so it must not be here.
#[cfg(all(feature = "export-modules", feature = "http"))]
ngx::ngx_modules!(ngx_http_upstream_cause_module);
