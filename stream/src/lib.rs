//! ngx_stream_upstream_cause_module's `.so`: the module is in the parent
//! crate (`src/stream/`); this package only builds it alone.

pub use ngx_http_upstream_cause_module::ngx_stream_upstream_cause_module;

// The `ngx_modules` table nginx's `load_module` looks for in a cdylib. In
// nginx's own build (`config`) nginx generates it, so it must not be here.
#[cfg(feature = "export-modules")]
ngx::ngx_modules!(ngx_stream_upstream_cause_module);
