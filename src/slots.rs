//! Standing in front of nginx's callbacks (HTTP's balancers' `peer.init`
//! and `free`, in `http/wrap.rs`): the tables the wrappers use.
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
