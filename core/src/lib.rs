//! The pure core of ngx-upstream-cause: the cause taxonomy, the parser of
//! nginx's error text, the records of a request's attempts, the classifier,
//! the request's summary and the renderers. No nginx types, no
//! FFI, no unsafe: everything here is unit-tested on any toolchain.
#![forbid(unsafe_code)]

pub mod cause;
pub mod classify;
pub mod errlog;
pub mod errno;
pub mod hint;
pub mod live;
pub mod metrics;
pub mod observed;
pub mod peers;
pub mod prefix;
pub mod proxy_status;
pub mod render;
pub mod scan;
pub mod summary;
pub mod text;

pub use cause::Cause;
pub use classify::{classify, final_cause, End, Observation};
pub use observed::{At, Observed};
pub use render::{Entry, LogLine};
pub use summary::{summarize, State, Summary};
pub use text::{Message, MessageKind, Phase};
