//! Whether an upstream group whose balancer had no peer to give is
//! saturated (a live server at its `max_conns`) rather than down: read
//! from round robin's peers, under the zone's lock when the group has one.
//! HTTP's and stream's round robin keep the same peers in types of their
//! own: [`round_robin!`] makes the reader for one protocol's types.

/// The reader of one protocol's round-robin peers: its peers' list type,
/// its peer type, its upstream group type, and the nginx feature that
/// gives its groups a shared `zone`.
macro_rules! round_robin {
    ($peers:ty, $peer:ty, $us:ty, $zone:literal) => {
        use upstream_cause_core::peers::Peer;

        /// The most servers (primaries and backups) looked at in a group.
        const PEERS_MAX: usize = 4096;

        /// The round-robin peers of an upstream group, as the core's [`Peer`]s,
        /// each with nginx's peer and whether it is a backup.
        struct RrPeers {
            /// The list being walked, then its backups.
            list: Option<*const $peers>,
            peer: *const $peer,
            left: usize,
            backup: bool,
        }

        impl Iterator for RrPeers {
            type Item = (Peer, *const $peer, bool);

            // time_t and ngx_uint_t are narrower than 64 bits on some targets
            #[allow(clippy::unnecessary_cast)]
            fn next(&mut self) -> Option<Self::Item> {
                loop {
                    if self.left == 0 {
                        return None;
                    }
                    // SAFETY: round robin's peers of a live group, read under the
                    // zone's lock when the group has one (see `saturated`).
                    if let Some(p) = unsafe { self.peer.as_ref() } {
                        let raw = self.peer;
                        self.peer = p.next;
                        self.left -= 1;
                        let peer = Peer {
                            down: p.down != 0,
                            fails: p.fails as u64,
                            max_fails: p.max_fails as u64,
                            checked: p.checked as i64,
                            fail_timeout: p.fail_timeout as i64,
                            conns: p.conns as u64,
                            max_conns: p.max_conns as u64,
                        };
                        return Some((peer, raw, self.backup));
                    }
                    // SAFETY: as above; `next` is the backup list or null.
                    let next = unsafe { self.list.take()?.as_ref()?.next };
                    // SAFETY: as above.
                    self.peer = unsafe { next.as_ref() }.map_or(core::ptr::null(), |b| b.peer);
                    self.list = None;
                    self.backup = true;
                }
            }
        }

        /// Whether the group `us`, whose balancer found no peer to give, is
        /// saturated (some live server at its `max_conns`) rather than down.
        ///
        /// Round robin keeps its peers in `us->peer.data`, and so do hash,
        /// ip_hash, least_conn and random, which build on it. A balancer that
        /// keeps something else there (a third-party one) is told apart by what
        /// round robin always sets: the peers' name points at the group's own host
        /// name, or, with a `zone`, their slab pool is the zone's. Such a group
        /// reads as not saturated, and its failures stay `no_live_upstreams`.
        #[cold]
        pub fn saturated(us: &mut $us) -> bool {
            let Some((p, in_zone)) = round_robin_of(us) else {
                return false;
            };
            // SAFETY: ngx_cached_time is always valid in a running nginx.
            #[allow(clippy::unnecessary_cast)] // time_t is 32 bits on some targets
            let now = unsafe { (*ngx::ffi::ngx_cached_time).sec } as i64;
            let single = p.single() != 0;
            let all = walk(p);
            let read = || upstream_cause_core::peers::saturated(all.map(|(p, _, _)| p), now, single);
            if in_zone {
                read_locked(p, read)
            } else {
                read()
            }
        }

        /// The group's round-robin peers and whether they live in its `zone`;
        /// `None` when its balancer keeps something else in `peer.data`.
        fn round_robin_of(us: &mut $us) -> Option<(&mut $peers, bool)> {
            let peers = us.peer.data.cast::<$peers>();
            // SAFETY: null or the data the group's init_upstream set; read as
            // round robin's only after the checks below.
            let p = unsafe { peers.as_mut() }?;
            let in_zone = in_zone(us, p);
            (in_zone || core::ptr::eq(p.name, &us.host)).then_some((p, in_zone))
        }

        /// A walk of the peers, primaries then backups (at most PEERS_MAX).
        fn walk(p: &$peers) -> RrPeers {
            RrPeers {
                list: Some(p),
                peer: p.peer,
                left: PEERS_MAX,
                backup: false,
            }
        }

        /// nginx's view of the group's peers now, primaries then backups (for
        /// the live view), and whether it is read from the group's `zone`
        /// (shared by the workers) rather than this worker's copy. `None`:
        /// the group's balancer does not keep round robin's peers (see
        /// `saturated`).
        // (the stream module's own instance does not serve the live view)
        #[allow(dead_code)]
        pub fn snapshot(us: &mut $us) -> Option<(bool, Vec<upstream_cause_core::live::doc::PeerConf>)> {
            let (p, in_zone) = round_robin_of(us)?;
            let all = walk(p);
            #[allow(clippy::unnecessary_cast)] // ngx_int_t is narrower on some targets
            let read = || {
                all.map(|(peer, raw, backup)| {
                    // SAFETY: the peer the walk just read, under the same lock.
                    let r = unsafe { &*raw };
                    upstream_cause_core::live::doc::PeerConf {
                        name: r.name.as_bytes().to_vec(),
                        server: r.server.as_bytes().to_vec(),
                        backup,
                        weight: r.weight.max(0) as u64,
                        peer,
                    }
                })
                .collect::<Vec<_>>()
            };
            let list = if in_zone { read_locked(p, read) } else { read() };
            Some((in_zone, list))
        }

        /// Whether the group's peers live in its `zone` (shared between workers).
        #[cfg(ngx_feature = $zone)]
        fn in_zone(us: &$us, p: &$peers) -> bool {
            // SAFETY: null or the group's live shared zone.
            unsafe { us.shm_zone.as_ref() }.is_some_and(|z| !p.shpool.is_null() && z.shm.addr.cast() == p.shpool)
        }

        /// Runs `f` under the zone's read lock: round robin reads the shared peers
        /// under it, so do we. A panic in `f` lets the lock go before it goes on. The
        /// backup servers have a lock of their own, not taken: their counters are
        /// read as they are at that moment, which is all an answer about the past
        /// attempt needs.
        #[cfg(ngx_feature = $zone)]
        fn read_locked<R>(p: &mut $peers, f: impl FnOnce() -> R) -> R {
            let lock = &raw mut p.rwlock;
            // SAFETY: the zone's peers lock, as round robin takes it.
            unsafe { ngx::ffi::ngx_rwlock_rlock(lock) };
            // (a panic inside must not leave the lock taken: it is let go
            // first, then the panic goes on to the caller's guard)
            let read = std::panic::catch_unwind(core::panic::AssertUnwindSafe(f));
            // SAFETY: taken above.
            unsafe { ngx::ffi::ngx_rwlock_unlock(lock) };
            read.unwrap_or_else(|e| std::panic::resume_unwind(e))
        }

        #[cfg(not(ngx_feature = $zone))]
        fn in_zone(_: &$us, _: &$peers) -> bool {
            false
        }

        #[cfg(not(ngx_feature = $zone))]
        fn read_locked<R>(_: &mut $peers, f: impl FnOnce() -> R) -> R {
            f()
        }
    };
}
pub(crate) use round_robin;
