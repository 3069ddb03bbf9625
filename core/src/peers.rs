//! Saturation: why a balancer found no peer to try.
//!
//! nginx logs `no live upstreams` both when every server of the group is
//! down or failed and when every live one is at its `max_conns` limit. The
//! shell reads the group's round-robin peers (shared by round robin, hash,
//! ip_hash, least_conn and random) when the balancer answers "busy", and
//! this decides which of the two it was, with round robin's own rules.

/// One server of an upstream group as round robin keeps it
/// (`ngx_http_upstream_rr_peer_t`), at the moment the balancer gave up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// Marked `down` in the configuration.
    pub down: bool,
    /// Failures counted in the current `fail_timeout` window.
    pub fails: u64,
    /// `max_fails` (0: failures never take the server out).
    pub max_fails: u64,
    /// When the failures were last checked (seconds).
    pub checked: i64,
    /// `fail_timeout` (seconds).
    pub fail_timeout: i64,
    /// Connections open to it now.
    pub conns: u64,
    /// `max_conns` (0: no limit).
    pub max_conns: u64,
}

impl Peer {
    /// Taken out by its failures: `max_fails` reached within
    /// `fail_timeout`, as `ngx_http_upstream_get_peer` tests it.
    pub fn failed(&self, now: i64) -> bool {
        self.max_fails != 0 && self.fails >= self.max_fails && now.saturating_sub(self.checked) <= self.fail_timeout
    }

    /// At its `max_conns` limit.
    pub fn full(&self) -> bool {
        self.max_conns != 0 && self.conns >= self.max_conns
    }
}

/// Whether a group that had no peer to give was saturated rather than
/// down: some server of it (primary or backup) is neither `down` nor
/// failed, and is at its `max_conns` limit. `single` is round robin's
/// one-server shortcut, which does not look at failures.
pub fn saturated(peers: impl IntoIterator<Item = Peer>, now: i64, single: bool) -> bool {
    peers
        .into_iter()
        .any(|p| !p.down && (single || !p.failed(now)) && p.full())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn live(conns: u64, max_conns: u64) -> Peer {
        Peer {
            max_fails: 1,
            fail_timeout: 10,
            conns,
            max_conns,
            ..Default::default()
        }
    }

    #[test]
    fn a_full_live_peer_saturates() {
        assert!(saturated([live(1, 1)], NOW, true));
        assert!(saturated([live(1, 1), live(3, 2)], NOW, false));
        // one full and one failed: the group is saturated, not down
        let failed = Peer {
            fails: 1,
            checked: NOW - 5,
            ..live(0, 0)
        };
        assert!(saturated([failed, live(1, 1)], NOW, false));
        // a backup at its limit counts too (the caller passes primaries and backups)
        assert!(saturated(
            [
                failed,
                Peer {
                    down: true,
                    ..live(1, 1)
                },
                live(4, 4)
            ],
            NOW,
            false
        ));
    }

    #[test]
    fn down_or_failed_peers_are_not_saturated() {
        assert!(!saturated([], NOW, false));
        assert!(!saturated([live(0, 0)], NOW, false), "no limit");
        assert!(!saturated([live(0, 1)], NOW, false), "room left");
        assert!(!saturated(
            [Peer {
                down: true,
                ..live(1, 1)
            }],
            NOW,
            false
        ));
        let failed_full = Peer {
            fails: 3,
            max_fails: 3,
            checked: NOW - 10,
            ..live(1, 1)
        };
        assert!(!saturated([failed_full], NOW, false));
        // ... but round robin's single-server shortcut ignores failures
        assert!(saturated([failed_full], NOW, true));
    }

    #[test]
    fn failures_expire_after_fail_timeout() {
        let p = Peer {
            fails: 1,
            max_fails: 1,
            checked: NOW - 11,
            fail_timeout: 10,
            ..Default::default()
        };
        assert!(!p.failed(NOW));
        assert!(Peer { checked: NOW - 10, ..p }.failed(NOW));
        assert!(
            !Peer { max_fails: 0, ..p }.failed(NOW),
            "max_fails=0 never fails a server"
        );
        assert!(!Peer {
            fails: 0,
            checked: NOW,
            ..p
        }
        .failed(NOW));
        // a clock that went backwards, or a garbage timestamp: no overflow
        assert!(Peer { checked: i64::MAX, ..p }.failed(NOW));
        assert!(!Peer { checked: i64::MIN, ..p }.failed(NOW));
    }
}
