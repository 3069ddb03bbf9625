//! Standing in front of nginx's callbacks (the balancers' `peer.init` and
//! `free`, HTTP's and stream's: [`balancer!`]): the tables the wrappers
//! use.
//!
//! To wrap a callback without allocating per request (no per-request data
//! to say what we wrapped), each distinct original gets a slot and a
//! wrapper function of its own, `wrapper::<I>`, that calls slot `I`'s
//! original. The distinct originals of a configuration are few (the
//! balancers: round robin, keepalive, hash, ...), so the tables are small;
//! when one is full the callback is simply left unwrapped.
//!
//! A slot, once filled, never changes: a wrapper installed in any request
//! or configuration (also one of an older cycle still draining after a
//! reload) always calls the function it was installed for.

use core::cell::UnsafeCell;

/// Slots per table (wrappers are instantiated for each).
pub const N: usize = 16;

/// `CAP` slots, filled in order and never emptied.
pub struct Slots<T: Copy, const CAP: usize = N> {
    items: UnsafeCell<[Option<T>; CAP]>,
}

// SAFETY: nginx calls us from one thread per process (configuration in the
// master, requests in each worker); slots are only ever appended, and a
// filled slot is never written again.
unsafe impl<T: Copy, const CAP: usize> Sync for Slots<T, CAP> {}

impl<T: Copy, const CAP: usize> Slots<T, CAP> {
    pub const fn new() -> Self {
        Slots {
            items: UnsafeCell::new([None; CAP]),
        }
    }

    /// The original in slot `i`.
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        // SAFETY: see the Sync impl: no write can be in progress.
        unsafe { (*self.items.get()).get(i).copied().flatten() }
    }

    /// The slot holding an original that `same` says is `v`, filling a
    /// free slot with `v` if there is none; `None` when the table is full.
    #[inline(always)]
    pub fn find_or_add(&self, v: T, same: impl Fn(&T, &T) -> bool) -> Option<usize> {
        // SAFETY: see the Sync impl: this thread is the only one using it.
        let items = unsafe { &mut *self.items.get() };
        for (i, slot) in items.iter_mut().enumerate() {
            match slot {
                Some(x) if same(x, &v) => return Some(i),
                Some(_) => {}
                None => {
                    *slot = Some(v);
                    return Some(i);
                }
            }
        }
        None
    }
}

/// `[f::<0>, f::<1>, ..., f::<15>]`: one wrapper per slot.
macro_rules! wrappers {
    ($f:ident) => {
        [
            $f::<0>, $f::<1>, $f::<2>, $f::<3>, $f::<4>, $f::<5>, $f::<6>, $f::<7>, $f::<8>, $f::<9>, $f::<10>,
            $f::<11>, $f::<12>, $f::<13>, $f::<14>, $f::<15>,
        ]
    };
}
pub(crate) use wrappers;

const _: () = assert!(N == 16, "wrappers! lists 16 instantiations");

/// Puts the wrapper of the slot holding `callback` in its place. Nothing to
/// do for no callback, or one of `wrappers` already; `Err(())` when the
/// table is full (the callback is left as it is).
pub fn wrap<F: Copy>(
    slots: &Slots<Option<F>>,
    callback: &mut Option<F>,
    wrappers: &[F; N],
    addr: impl Fn(F) -> usize,
) -> Result<(), ()> {
    let Some(f) = *callback else { return Ok(()) };
    if wrappers.iter().any(|w| addr(*w) == addr(f)) {
        return Ok(());
    }
    let i = slots.find_or_add(*callback, |a, b| same_fn(*a, *b, &addr)).ok_or(())?;
    *callback = Some(wrappers[i]);
    Ok(())
}

/// Whether two optional C callbacks are the same function (compared by
/// address, as nginx's C does).
pub fn same_fn<F: Copy>(a: Option<F>, b: Option<F>, addr: impl Fn(F) -> usize) -> bool {
    a.map(&addr) == b.map(&addr)
}

/// A protocol's balancer wrappers, as the keepalive module stands in front
/// of a balancer: in postconfiguration (after every `init_upstream` ran)
/// `wrap_all` replaces each group's `peer.init` with ours; ours calls the
/// original, then, where `$enabled` says the module is on, puts our `free`
/// in front of the inner balancer's. `get` is not wrapped: when it has no
/// peer to give, nginx says "no live upstreams" on the connection's log,
/// and the tap hears it. Being the outermost wrapper composes with
/// keepalive, hash, least_conn and the rest.
///
/// Nothing is allocated per request or session: `u->peer.data` stays the
/// inner balancer's (so `notify` and `set_session`/`save_session` need no
/// wrapping), and which inner function to call is said by the wrapper
/// itself (one instantiation per distinct function). Our `free` hands the
/// peer connection and whether the attempt failed to `$free`, before the
/// inner free runs (keepalive takes the connection, round robin counts).
///
/// `$owner` is the request or session type (with an `upstream` whose
/// `peer` is the attempt's), `$group` the upstream group type.
macro_rules! balancer {
    ($owner:ty, $group:ty, $init_pt:ty, $enabled:path, $free:path) => {
        type InitFn = unsafe extern "C" fn(*mut $owner, *mut $group) -> ngx::ffi::ngx_int_t;
        type FreeFn =
            unsafe extern "C" fn(*mut ngx::ffi::ngx_peer_connection_t, *mut core::ffi::c_void, ngx::ffi::ngx_uint_t);

        /// The original `peer.init` functions.
        static INITS: $crate::slots::Slots<$init_pt> = $crate::slots::Slots::new();
        static INIT_WRAPPERS: [InitFn; $crate::slots::N] = $crate::slots::wrappers!(init_peer);

        /// The inner balancers' `free`.
        static PEERS: $crate::slots::Slots<ngx::ffi::ngx_event_free_peer_pt> = $crate::slots::Slots::new();
        static FREE_WRAPPERS: [FreeFn; $crate::slots::N] = $crate::slots::wrappers!(free_peer);

        fn init_addr(f: InitFn) -> usize {
            f as usize
        }

        /// Replaces `peer.init` of every group of `upstreams` (explicit
        /// `upstream {}` blocks and the implicit ones of a `*_pass` to an
        /// address).
        pub fn wrap_all(cf: &mut ngx::ffi::ngx_conf_t, upstreams: &[*mut $group]) {
            for &uscf in upstreams {
                // SAFETY: valid group pointers owned by the upstream module.
                let Some(us) = (unsafe { uscf.as_mut() }) else {
                    continue;
                };
                if $crate::slots::wrap(&INITS, &mut us.peer.init, &INIT_WRAPPERS, init_addr).is_err() {
                    ngx::ngx_conf_log_error!(
                        ngx::ffi::NGX_LOG_WARN,
                        cf,
                        "upstream_cause: too many kinds of balancers, \"{}\" is not observed",
                        String::from_utf8_lossy(us.host.as_bytes())
                    );
                }
            }
        }

        unsafe extern "C" fn init_peer<const I: usize>(owner: *mut $owner, us: *mut $group) -> ngx::ffi::ngx_int_t {
            let Some(orig) = INITS.get(I).flatten() else {
                return ngx::ffi::NGX_ERROR as ngx::ffi::ngx_int_t;
            };
            // SAFETY: the original peer.init, called as nginx would have.
            let rc = unsafe { orig(owner, us) };
            if rc == ngx::ffi::NGX_OK as ngx::ffi::ngx_int_t {
                $crate::guard((), || {
                    // SAFETY: nginx calls peer.init with a live request or
                    // session, whose upstream the original init just set up.
                    if let Some(owner) = unsafe { owner.as_mut() } {
                        if $enabled(owner) {
                            install(owner);
                        }
                    }
                });
            }
            rc
        }

        /// Puts our free in front of the one the original init set.
        fn install(owner: &mut $owner) {
            // SAFETY: the owner's upstream, live while the owner is.
            let Some(u) = (unsafe { owner.upstream.as_mut() }) else {
                return;
            };
            let p = &mut u.peer;
            if p.free.is_none() {
                return;
            }
            // No slot left: nginx works exactly as without us for this balancer.
            if let Some(i) = PEERS.find_or_add(p.free, |a, b| {
                $crate::slots::same_fn(*a, *b, |f: FreeFn| f as usize)
            }) {
                p.free = Some(FREE_WRAPPERS[i]);
            }
        }

        unsafe extern "C" fn free_peer<const I: usize>(
            pc: *mut ngx::ffi::ngx_peer_connection_t,
            data: *mut core::ffi::c_void,
            state: ngx::ffi::ngx_uint_t,
        ) {
            // SAFETY: nginx calls free with u->peer, live for the call; the
            // reference ends before the inner free runs.
            if let Some(pcr) = unsafe { pc.as_ref() } {
                $free(
                    pcr,
                    state & ngx::ffi::NGX_PEER_FAILED as ngx::ffi::ngx_uint_t != 0,
                );
            }
            if let Some(Some(inner)) = PEERS.get(I) {
                // SAFETY: the inner balancer's free with its own data.
                unsafe { inner(pc, data, state) };
            }
        }
    };
}
pub(crate) use balancer;
