//! What a wrong directive is told: every `[emerg]` of the module's
//! directives, rendered in one place, as nginx's own parser words them.
//! nginx appends ` in FILE:LINE`.

use core::ffi::c_char;

use ngx::core::NGX_CONF_ERROR;
use ngx::ffi::{ngx_conf_t, ngx_uint_t, NGX_LOG_EMERG};
use ngx::{ngx_conf_log_error, ngx_log_error};

/// Bytes of a wrong value quoted in an `[emerg]`: nginx cuts the whole
/// message at 1024 bytes, and the directive's name comes after the value.
const SHOWN_MAX: usize = 64;

pub enum ConfError<'a> {
    /// The directive was given twice in one block.
    Duplicate,
    /// A value the directive does not take; `expected` ends the message.
    Invalid {
        value: &'a [u8],
        expected: &'static str,
    },
    InvalidZoneName,
    InvalidZoneSize {
        value: &'a [u8],
    },
    ZoneTooSmall {
        value: &'a [u8],
        least_kib: usize,
    },
    DuplicateZone {
        name: &'a [u8],
    },
    /// `upstream_cause_metrics` in a configuration without a zone.
    MetricsWithoutZone,
    /// nginx could not do what the directive needs (it said why).
    Failed,
}

/// A directive's value as quoted in a message: its first bytes, then
/// "..." if there were more.
fn shown(value: &[u8]) -> String {
    let cut = &value[..value.len().min(SHOWN_MAX)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if cut.len() < value.len() {
        s.push_str("...");
    }
    s
}

/// Logs `err` for `directive` at `[emerg]` (nginx adds the file:line
/// being parsed), and fails the directive.
pub fn report(cf: &mut ngx_conf_t, directive: &[u8], err: ConfError<'_>) -> *mut c_char {
    let cf: *mut ngx_conf_t = cf;
    if let Some(message) = message(directive, err) {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", message);
    }
    NGX_CONF_ERROR
}

/// Logs `err` for `directive` at `[emerg]`, found wrong after the parse:
/// at the directive's own `file:line`, as nginx's parser would have.
pub fn report_at(cf: &ngx_conf_t, directive: &[u8], err: ConfError<'_>, file: &[u8], line: ngx_uint_t) {
    if let Some(message) = message(directive, err) {
        ngx_log_error!(
            NGX_LOG_EMERG,
            cf.log,
            "{} in {}:{}",
            message,
            String::from_utf8_lossy(file),
            line
        );
    }
}

fn message(directive: &[u8], err: ConfError<'_>) -> Option<String> {
    let d = String::from_utf8_lossy(directive);
    Some(match err {
        ConfError::Duplicate => format!("\"{d}\" directive is duplicate"),
        ConfError::Invalid { value, expected } => {
            format!(
                "invalid value \"{}\" in \"{d}\" directive, it must be {expected}",
                shown(value)
            )
        }
        ConfError::InvalidZoneName => format!("invalid zone name \"\" in \"{d}\" directive"),
        ConfError::InvalidZoneSize { value } => format!("invalid zone size \"{}\" in \"{d}\" directive", shown(value)),
        ConfError::ZoneTooSmall { value, least_kib } => format!(
            "zone size \"{}\" in \"{d}\" directive is too small, the least is {least_kib}k",
            shown(value)
        ),
        ConfError::DuplicateZone { name } => format!("duplicate zone \"{}\" in \"{d}\" directive", shown(name)),
        ConfError::MetricsWithoutZone => format!("\"{d}\" requires an \"upstream_cause_zone\""),
        ConfError::Failed => return None,
    })
}
