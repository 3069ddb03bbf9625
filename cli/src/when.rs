//! The times `--since` and `--until` take, on the log's own clock (nginx
//! writes local time without a zone).

use upstream_cause_core::errlog::{parse_time, Time};

/// Now, on the local clock.
fn now() -> Time {
    chrono::Local::now().naive_local().and_utc().timestamp()
}

/// Parses a time: nginx's `2026/11/25 10:00:00`, ISO 8601 `2026-11-25`,
/// `2026-11-25 10:00`, `2026-11-25T10:00:00`, a time of today `10:00` or
/// `10:00:30`, or an age: `90s`, `15m`, `2h`, `7d` before now.
pub fn parse(s: &str) -> Result<Time, String> {
    parse_at(s, now())
}

fn parse_at(s: &str, now: Time) -> Result<Time, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "invalid time {s:?}: use \"2026/11/25 10:00:00\", \"2026-11-25T10:00\", \"10:00\" or an age such as \"15m\""
        )
    };
    if let Some(unit) = s.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        let n: i64 = s[..s.len() - 1].parse().map_err(|_| bad())?;
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        return n.checked_mul(secs).and_then(|d| now.checked_sub(d)).ok_or_else(bad);
    }
    let norm: String = s
        .chars()
        .map(|c| {
            if c == '-' {
                '/'
            } else if c == 'T' {
                ' '
            } else {
                c
            }
        })
        .collect();
    let full = match norm.len() {
        // 10:00, 10:00:30: today
        5 | 8 if norm.as_bytes()[2] == b':' => {
            let today = upstream_cause_core::errlog::format_time(now);
            format!("{} {norm}{}", &today[..10], if norm.len() == 5 { ":00" } else { "" })
        }
        10 => format!("{norm} 00:00:00"),
        16 => format!("{norm}:00"),
        _ => norm,
    };
    parse_time(full.as_bytes()).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form() {
        let now = parse_time(b"2026/11/25 10:30:00").unwrap();
        let t = |s| parse_at(s, now);
        assert_eq!(
            t("2026/11/25 10:00:00"),
            parse_time(b"2026/11/25 10:00:00").ok_or_else(String::new)
        );
        assert_eq!(t("2026-11-25T10:00:00"), t("2026/11/25 10:00:00"));
        assert_eq!(t("2026-11-25 10:00"), t("2026/11/25 10:00:00"));
        assert_eq!(t("10:00"), t("2026/11/25 10:00:00"));
        assert_eq!(t("10:00:30").unwrap() - t("10:00").unwrap(), 30);
        assert_eq!(t("2026-11-25").unwrap(), now - 10 * 3600 - 1800);
        assert_eq!(t("30m").unwrap(), now - 1800);
        assert_eq!(t("2h").unwrap(), now - 7200);
        assert_eq!(t("1d").unwrap(), now - 86_400);
        for bad in ["", "yesterday", "10", "2026-13-01", "5x", "99999999999999999999d"] {
            assert!(t(bad).is_err(), "{bad}");
        }
    }
}
