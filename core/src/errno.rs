//! The errno values nginx prints in "(N: text)". The classifier works in
//! Linux's numbers (the constants below); a number is read by the platform
//! that wrote it: Linux and musl, FreeBSD, macOS, and Windows Sockets'
//! own (10000 and up). nginx prints the number with its platform's text, so
//! where a number's text is not that number's text on the platform the
//! core is built for, the text tells which errno it is (a macOS log read on
//! Linux: `(61: Connection refused)` is ECONNREFUSED, not Linux's ENODATA).
//! The core does not depend on libc.

pub const EPERM: u16 = 1;
pub const ENOENT: u16 = 2;
pub const EAGAIN: u16 = 11;
pub const EACCES: u16 = 13;
pub const ENFILE: u16 = 23;
pub const EMFILE: u16 = 24;
pub const EPIPE: u16 = 32;
pub const EADDRNOTAVAIL: u16 = 99;
pub const ENETDOWN: u16 = 100;
pub const ENETUNREACH: u16 = 101;
pub const ECONNABORTED: u16 = 103;
pub const ECONNRESET: u16 = 104;
pub const ENOTCONN: u16 = 107;
pub const ETIMEDOUT: u16 = 110;
pub const ECONNREFUSED: u16 = 111;
pub const EHOSTDOWN: u16 = 112;
pub const EHOSTUNREACH: u16 = 113;

/// One errno of a platform: its name, its number there, Linux's number
/// for it, and the texts its C libraries give it.
#[derive(Clone, Copy, Debug)]
pub struct Errno {
    pub name: &'static str,
    pub number: u16,
    pub linux: u16,
    pub texts: &'static [&'static str],
}

const fn e(name: &'static str, number: u16, linux: u16, texts: &'static [&'static str]) -> Errno {
    Errno {
        name,
        number,
        linux,
        texts,
    }
}

/// Linux: glibc's texts, then musl's where they differ.
pub const LINUX: &[Errno] = &[
    e("EPERM", 1, EPERM, &["Operation not permitted"]),
    e("ENOENT", 2, ENOENT, &["No such file or directory"]),
    e("EAGAIN", 11, EAGAIN, &["Resource temporarily unavailable"]),
    e("EACCES", 13, EACCES, &["Permission denied"]),
    e("ENFILE", 23, ENFILE, &["Too many open files in system"]),
    e(
        "EMFILE",
        24,
        EMFILE,
        &["Too many open files", "No file descriptors available"],
    ),
    e("EPIPE", 32, EPIPE, &["Broken pipe"]),
    e(
        "EADDRNOTAVAIL",
        99,
        EADDRNOTAVAIL,
        &["Cannot assign requested address", "Address not available"],
    ),
    e("ENETDOWN", 100, ENETDOWN, &["Network is down"]),
    e(
        "ENETUNREACH",
        101,
        ENETUNREACH,
        &["Network is unreachable", "Network unreachable"],
    ),
    e(
        "ECONNABORTED",
        103,
        ECONNABORTED,
        &["Software caused connection abort", "Connection aborted"],
    ),
    e("ECONNRESET", 104, ECONNRESET, &["Connection reset by peer"]),
    e(
        "ENOTCONN",
        107,
        ENOTCONN,
        &["Transport endpoint is not connected", "Socket not connected"],
    ),
    e(
        "ETIMEDOUT",
        110,
        ETIMEDOUT,
        &["Connection timed out", "Operation timed out"],
    ),
    e("ECONNREFUSED", 111, ECONNREFUSED, &["Connection refused"]),
    e("EHOSTDOWN", 112, EHOSTDOWN, &["Host is down"]),
    e(
        "EHOSTUNREACH",
        113,
        EHOSTUNREACH,
        &["No route to host", "Host is unreachable"],
    ),
];

/// FreeBSD (its libc's texts).
pub const FREEBSD: &[Errno] = &[
    e("EPERM", 1, EPERM, &["Operation not permitted"]),
    e("ENOENT", 2, ENOENT, &["No such file or directory"]),
    e("EACCES", 13, EACCES, &["Permission denied"]),
    e("ENFILE", 23, ENFILE, &["Too many open files in system"]),
    e("EMFILE", 24, EMFILE, &["Too many open files"]),
    e("EPIPE", 32, EPIPE, &["Broken pipe"]),
    e("EAGAIN", 35, EAGAIN, &["Resource temporarily unavailable"]),
    e("EADDRNOTAVAIL", 49, EADDRNOTAVAIL, &["Can't assign requested address"]),
    e("ENETDOWN", 50, ENETDOWN, &["Network is down"]),
    e("ENETUNREACH", 51, ENETUNREACH, &["Network is unreachable"]),
    e("ECONNABORTED", 53, ECONNABORTED, &["Software caused connection abort"]),
    e("ECONNRESET", 54, ECONNRESET, &["Connection reset by peer"]),
    e("ENOTCONN", 57, ENOTCONN, &["Socket is not connected"]),
    e("ETIMEDOUT", 60, ETIMEDOUT, &["Operation timed out"]),
    e("ECONNREFUSED", 61, ECONNREFUSED, &["Connection refused"]),
    e("EHOSTDOWN", 64, EHOSTDOWN, &["Host is down"]),
    e("EHOSTUNREACH", 65, EHOSTUNREACH, &["No route to host"]),
];

/// macOS: the numbers of BSD, and its libc's texts.
pub const MACOS: &[Errno] = FREEBSD;

/// Windows Sockets (`WSAGetLastError()`), with the texts `FormatMessage`
/// gives them (nginx drops the final period).
pub const WINDOWS: &[Errno] = &[
    e("WSAEACCES", 10013, EACCES, &["An attempt was made to access a socket in a way forbidden by its access permissions"]),
    e("WSAEMFILE", 10024, EMFILE, &["Too many open sockets"]),
    e("WSAEWOULDBLOCK", 10035, EAGAIN, &["A non-blocking socket operation could not be completed immediately"]),
    e("WSAEADDRNOTAVAIL", 10049, EADDRNOTAVAIL, &["The requested address is not valid in its context"]),
    e("WSAENETDOWN", 10050, ENETDOWN, &["A socket operation encountered a dead network"]),
    e("WSAENETUNREACH", 10051, ENETUNREACH, &["A socket operation was attempted to an unreachable network"]),
    e("WSAECONNABORTED", 10053, ECONNABORTED, &["An established connection was aborted by the software in your host machine"]),
    e("WSAECONNRESET", 10054, ECONNRESET, &["An existing connection was forcibly closed by the remote host"]),
    e("WSAENOTCONN", 10057, ENOTCONN, &["A request to send or receive data was disallowed because the socket is not connected and (when sending on a datagram socket using a sendto call) no address was supplied"]),
    e("WSAETIMEDOUT", 10060, ETIMEDOUT, &["A connection attempt failed because the connected party did not properly respond after a period of time, or established connection failed because connected host has failed to respond"]),
    e("WSAECONNREFUSED", 10061, ECONNREFUSED, &["No connection could be made because the target machine actively refused it"]),
    e("WSAEHOSTDOWN", 10064, EHOSTDOWN, &["A socket operation failed because the destination host was down"]),
    e("WSAEHOSTUNREACH", 10065, EHOSTUNREACH, &["A socket operation was attempted to an unreachable host"]),
];

/// The table of the platform the core is built for: the module reads its
/// own nginx's numbers by it.
#[cfg(any(target_os = "freebsd", target_os = "dragonfly"))]
pub const NATIVE: &[Errno] = FREEBSD;
#[cfg(any(target_os = "macos", target_os = "ios"))]
pub const NATIVE: &[Errno] = MACOS;
#[cfg(windows)]
pub const NATIVE: &[Errno] = WINDOWS;
#[cfg(not(any(
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "macos",
    target_os = "ios",
    windows
)))]
pub const NATIVE: &[Errno] = LINUX;

/// Whether `text` (nginx's, after "N: ") is one of the entry's texts:
/// ASCII case aside, and without a final period or spaces.
fn says(e: &Errno, text: &[u8]) -> bool {
    let text = text.trim_ascii();
    let text = text.strip_suffix(b".").unwrap_or(text);
    e.texts.iter().any(|t| t.as_bytes().eq_ignore_ascii_case(text))
}

fn by_number(table: &[Errno], n: u16) -> Option<&Errno> {
    table.iter().find(|e| e.number == n)
}

/// An errno as nginx printed it, `number` and its `text`, in Linux's
/// numbers: by Windows Sockets' table from 10000 up; by the native
/// platform's when the text agrees (or there is none); else by the text,
/// on whichever platform says it; else the number as the native platform
/// numbers it (Linux's numbers for those the tables do not hold).
pub fn canonical(number: u16, text: &[u8]) -> u16 {
    if number >= 10_000 {
        return by_number(WINDOWS, number).map_or(number, |e| e.linux);
    }
    let native = by_number(NATIVE, number);
    if let Some(e) = native {
        if text.is_empty() || says(e, text) {
            return e.linux;
        }
    }
    for table in [LINUX, FREEBSD, WINDOWS] {
        if let Some(e) = table.iter().find(|e| says(e, text)) {
            return e.linux;
        }
    }
    native.map_or(number, |e| e.linux)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_read_by_the_platform_its_text_names() {
        let cases: &[(u16, &str, u16)] = &[
            (111, "Connection refused", ECONNREFUSED),
            // macOS and FreeBSD: 61 is Linux's ENODATA
            (61, "Connection refused", ECONNREFUSED),
            (65, "No route to host", EHOSTUNREACH),
            (60, "Operation timed out", ETIMEDOUT),
            (54, "Connection reset by peer", ECONNRESET),
            (35, "Resource temporarily unavailable", EAGAIN),
            // musl's texts
            (113, "Host is unreachable", EHOSTUNREACH),
            (99, "Address not available", EADDRNOTAVAIL),
            // Windows Sockets
            (
                10061,
                "No connection could be made because the target machine actively refused it",
                ECONNREFUSED,
            ),
            (10061, "", ECONNREFUSED),
            (
                10054,
                "An existing connection was forcibly closed by the remote host.",
                ECONNRESET,
            ),
            (10060, "whatever the text", ETIMEDOUT),
            // texts nobody has: the number, as Linux's
            (22, "Invalid argument", 22),
            (111, "", ECONNREFUSED),
            (10999, "x", 10999),
            (0, "", 0),
        ];
        for &(n, text, want) in cases {
            assert_eq!(canonical(n, text.as_bytes()), want, "({n}: {text})");
        }
    }

    #[test]
    fn every_table_maps_names_to_linux_s_numbers() {
        for table in [LINUX, FREEBSD, MACOS, WINDOWS] {
            for e in table {
                let linux = LINUX
                    .iter()
                    .find(|l| {
                        let name = e.name.trim_start_matches("WSA");
                        l.name == if name == "EWOULDBLOCK" { "EAGAIN" } else { name }
                    })
                    .unwrap_or_else(|| panic!("{} has no Linux errno", e.name));
                assert_eq!(e.linux, linux.number, "{}", e.name);
                assert!(!e.texts.is_empty(), "{}", e.name);
            }
        }
    }
}
