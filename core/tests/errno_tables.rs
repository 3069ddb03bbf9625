//! The core's errno tables against each platform's published list
//! (tests/errno/: verbatim excerpts of Linux's, glibc's, musl's, FreeBSD's,
//! xnu's and macOS libc's, mingw-w64's and Microsoft's, each file naming
//! its source): every number and every text the classifier reads by.

use std::collections::HashMap;
use std::path::Path;

use upstream_cause_core::errno::{Errno, FREEBSD, LINUX, MACOS, WINDOWS};

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/errno").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `#define NAME NUMBER /* text */` lines: name -> (number, text).
fn defines(text: &str) -> HashMap<String, (u16, String)> {
    let mut out = HashMap::new();
    for l in text.lines().filter(|l| l.starts_with("#define")) {
        let mut f = l.split_whitespace().skip(1);
        let (Some(name), Some(number)) = (f.next(), f.next()) else {
            continue;
        };
        let Ok(number) = number.parse() else {
            continue;
        };
        let comment = l
            .split_once("/*")
            .and_then(|(_, c)| c.split_once("*/"))
            .map_or("", |(c, _)| c.trim());
        out.insert(name.to_owned(), (number, comment.to_owned()));
    }
    out
}

/// The first quoted string of a line after `key(NAME,`: name -> text.
fn quoted(text: &str, key: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for l in text.lines() {
        let Some(rest) = l.trim_start().strip_prefix(key) else {
            continue;
        };
        let Some((name, rest)) = rest.split_once(',') else {
            continue;
        };
        let Some(text) = rest.split('"').nth(1) else {
            continue;
        };
        out.insert(name.trim().to_owned(), text.to_owned());
    }
    out
}

fn entry<'a>(table: &'a [Errno], name: &str) -> &'a Errno {
    table
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the table"))
}

#[test]
fn linux_numbers_and_glibc_s_and_musl_s_texts() {
    let numbers = defines(&read("linux.h"));
    let glibc = quoted(&read("glibc.txt"), "_S(");
    let musl = quoted(&read("musl.txt"), "E(");
    for e in LINUX {
        assert_eq!(numbers[e.name].0, e.number, "{}", e.name);
        assert_eq!(e.texts[0], glibc[e.name], "{}: glibc's text first", e.name);
        if let Some(t) = musl.get(e.name) {
            assert!(e.texts.contains(&t.as_str()), "{}: musl's {t:?}", e.name);
        }
    }
    assert_eq!(
        numbers.len(),
        LINUX.len() + numbers.contains_key("EWOULDBLOCK") as usize
    );
}

#[test]
fn freebsd_numbers_and_texts() {
    let numbers = defines(&read("freebsd.h"));
    for e in FREEBSD {
        let (n, text) = &numbers[e.name];
        assert_eq!((*n, e.texts[0]), (e.number, text.as_str()), "{}", e.name);
    }
}

#[test]
fn macos_numbers_and_its_libc_s_texts() {
    let numbers = defines(&read("macos.h"));
    // `"text",  /* 61 - ECONNREFUSED */`
    let mut texts = HashMap::new();
    for l in read("macos-strerror.txt")
        .lines()
        .filter(|l| l.trim_start().starts_with('"'))
    {
        let text = l.split('"').nth(1).unwrap_or_default();
        if let Some(name) = l.rsplit("- ").next().and_then(|n| n.split_whitespace().next()) {
            texts.insert(name.to_owned(), text.to_owned());
        }
    }
    for e in MACOS {
        assert_eq!(numbers[e.name].0, e.number, "{}", e.name);
        assert_eq!(e.texts[0], texts[e.name], "{}", e.name);
    }
}

#[test]
fn windows_sockets_numbers_and_texts() {
    let text = read("windows.txt");
    let base: u16 = defines(&text)["WSABASEERR"].0;
    // `#define WSAECONNREFUSED (WSABASEERR + 61)`
    let mut numbers = HashMap::new();
    for l in text.lines().filter(|l| l.starts_with("#define WSAE")) {
        let mut f = l.split_whitespace().skip(1);
        let name = f.next().unwrap_or_default().to_owned();
        let offset: u16 = l
            .rsplit('+')
            .next()
            .and_then(|n| n.trim().trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("{l}"));
        numbers.insert(name, base + offset);
    }
    // `10061<TAB>WSAECONNREFUSED<TAB>text`
    let mut texts = HashMap::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = l.split('\t').collect();
        if let [code, name, text] = f[..] {
            texts.insert(
                name.to_owned(),
                (code.parse::<u16>().unwrap_or(0), text.trim().to_owned()),
            );
        }
    }
    for e in WINDOWS {
        assert_eq!(numbers[e.name], e.number, "{}", e.name);
        let (code, text) = &texts[e.name];
        assert_eq!(*code, e.number, "{}", e.name);
        // nginx drops FormatMessage's final period
        assert_eq!(e.texts[0], text.trim_end_matches('.'), "{}", e.name);
    }
    assert_eq!(entry(WINDOWS, "WSAECONNREFUSED").number, 10061);
}
