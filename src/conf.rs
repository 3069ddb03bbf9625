//! What every module's directives share: running a handler on its
//! configuration and arguments, the values more than one directive takes
//! (`on|off`, a log level, a zone), and what a wrong directive is told:
//! every `[emerg]`, rendered in one place, as nginx's own parser words
//! them (nginx appends ` in FILE:LINE`).

use core::ffi::{c_char, c_void};
use core::ptr;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_pagesize, ngx_parse_size, ngx_shm_zone_t, ngx_str_t, ngx_uint_t, NGX_LOG_ALERT,
    NGX_LOG_CRIT, NGX_LOG_EMERG, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
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
    /// `upstream_cause_metrics` or `upstream_cause_status` in a
    /// configuration without a zone.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    NeedsZone,
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

#[cfg_attr(not(feature = "http"), allow(dead_code))]
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
        ConfError::NeedsZone => format!("\"{d}\" requires an \"upstream_cause_zone\""),
        ConfError::Failed => return None,
    })
}

/// A command table's entry, handled by `set`.
pub const fn command(
    name: ngx_str_t,
    type_: u32,
    set: extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char,
    conf: usize,
) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: type_ as ngx_uint_t,
        set: Some(set),
        conf,
        offset: 0,
        post: ptr::null_mut(),
    }
}

/// The arguments after the directive's name.
pub type Args<'a> = &'a [ngx_str_t];

/// Argument `i` (1 is the first after the name); empty if there is none.
pub fn arg(args: Args<'_>, i: usize) -> &[u8] {
    args.get(i).map_or(&[], |a| a.as_bytes())
}

/// Runs a directive's handler on its configuration `C` and its arguments,
/// and says what is wrong.
pub fn directive<C>(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
    handler: impl for<'a> FnOnce(&mut ngx_conf_t, &mut C, Args<'a>) -> Result<(), ConfError<'a>>,
) -> *mut c_char {
    crate::guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx's parser passes its cf, the command being handled,
        // and our configuration of the command's kind (C, by its `conf`).
        let (Some(cf), Some(cmd), Some(conf)) = (unsafe { cf.as_mut() }, unsafe { cmd.as_ref() }, unsafe {
            conf.cast::<C>().as_mut()
        }) else {
            return NGX_CONF_ERROR;
        };
        // SAFETY: cf->args holds the directive's name and its arguments, in
        // the configuration's pool for the whole parse.
        let args = unsafe { (*cf.args).as_slice::<ngx_str_t>() };
        match handler(cf, conf, args) {
            Ok(()) => NGX_CONF_OK,
            Err(e) => report(cf, cmd.name.as_bytes(), e),
        }
    })
}

/// A setting given at most once in a block: `value` goes in the empty
/// `slot`, else the directive is a duplicate.
pub fn once<'a, T>(slot: &mut Option<T>, value: Result<T, ConfError<'a>>) -> Result<(), ConfError<'a>> {
    if slot.is_some() {
        return Err(ConfError::Duplicate);
    }
    *slot = Some(value?);
    Ok(())
}

/// `upstream_cause_zone NAME SIZE` for the module `tag` (its
/// `ngx_module_t`), given at most once: the zone it registered goes in
/// `slot`.
pub fn zone_directive<'a>(
    cf: &mut ngx_conf_t,
    slot: &mut *mut ngx_shm_zone_t,
    args: Args<'a>,
    tag: *mut c_void,
) -> Result<(), ConfError<'a>> {
    if !slot.is_null() {
        return Err(ConfError::Duplicate);
    }
    let (name, size) = zone_args(args)?;
    *slot = crate::zone::add(cf, name, size, tag)?;
    Ok(())
}

/// `on` or `off`, as nginx's flag directives take them.
pub fn flag(value: &[u8]) -> Result<bool, ConfError<'_>> {
    if value.eq_ignore_ascii_case(b"on") {
        Ok(true)
    } else if value.eq_ignore_ascii_case(b"off") {
        Ok(false)
    } else {
        Err(ConfError::Invalid {
            value,
            expected: "\"on\" or \"off\"",
        })
    }
}

/// `upstream_cause_log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLine {
    Off,
    /// An nginx log level.
    At(ngx_uint_t),
}

const LEVELS: [(&[u8], LogLine); 8] = [
    (b"off", LogLine::Off),
    (b"emerg", LogLine::At(NGX_LOG_EMERG as ngx_uint_t)),
    (b"alert", LogLine::At(NGX_LOG_ALERT as ngx_uint_t)),
    (b"crit", LogLine::At(NGX_LOG_CRIT as ngx_uint_t)),
    (b"error", LogLine::At(NGX_LOG_ERR as ngx_uint_t)),
    (b"warn", LogLine::At(NGX_LOG_WARN as ngx_uint_t)),
    (b"notice", LogLine::At(NGX_LOG_NOTICE as ngx_uint_t)),
    (b"info", LogLine::At(NGX_LOG_INFO as ngx_uint_t)),
];

/// `off` or a level, for `upstream_cause_log`.
pub fn log_line(value: &[u8]) -> Result<LogLine, ConfError<'_>> {
    match LEVELS.iter().find(|(n, _)| *n == value) {
        Some((_, level)) => Ok(*level),
        None => Err(ConfError::Invalid {
            value,
            expected: "\"off\", \"emerg\", \"alert\", \"crit\", \"error\", \"warn\", \"notice\" or \"info\"",
        }),
    }
}

/// `upstream_cause_zone NAME SIZE`'s arguments: the name and the size in
/// bytes, at least eight pages (what a slab pool needs).
pub fn zone_args(args: Args<'_>) -> Result<(&ngx_str_t, usize), ConfError<'_>> {
    let name = args.get(1).filter(|n| n.len > 0).ok_or(ConfError::InvalidZoneName)?;
    let value = arg(args, 2);
    let mut size_arg = args.get(2).copied().ok_or(ConfError::InvalidZoneSize { value })?;
    // SAFETY: a configuration argument, only read.
    let size = unsafe { ngx_parse_size(&mut size_arg) };
    let Ok(size) = usize::try_from(size) else {
        return Err(ConfError::InvalidZoneSize { value });
    };
    // SAFETY: set by nginx at startup.
    let least = 8 * unsafe { ngx_pagesize };
    if size < least {
        return Err(ConfError::ZoneTooSmall {
            value,
            least_kib: least / 1024,
        });
    }
    Ok((name, size))
}

/// Puts `handler` first in a phase's array of handlers (an `ngx_array_t`
/// of the protocol's handler pointers, in the cycle's pool). Log-phase
/// handlers run in array order: the modules' go first, so that the
/// enriched line and the counters are written before the access log's
/// entry (whoever reads the access log sees them already there). `Err`
/// when the pool is out of memory.
pub fn first_handler<H: Copy>(handlers: &mut ngx::ffi::ngx_array_t, handler: H) -> Result<(), ()> {
    debug_assert_eq!(handlers.size, core::mem::size_of::<H>());
    // SAFETY: an ngx_array_t of handler pointers in the cycle pool.
    if unsafe { ngx::ffi::ngx_array_push(handlers) }.is_null() {
        return Err(());
    }
    // SAFETY: the array's elements, now one more.
    let all = unsafe { handlers.as_slice_mut::<H>() };
    all.rotate_right(1);
    all[0] = handler;
    Ok(())
}
