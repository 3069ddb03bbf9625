//! What the module hears of a session's attempts, in the session's
//! context: the balancer's `free` (from `wrap.rs`), with the session's own
//! counters and ends, and the error lines nginx logs (from the log tap),
//! among them "no live upstreams".
//!
//! nginx writes every line of a session on its client connection's log
//! (the peer connection's log is that one), whose data is the session.
//!
//! The context is made at the first failure signal, in the connection's
//! pool: a session that succeeds allocates nothing. It holds the core's
//! records in a `RefCell`: a call that re-enters while they are held (a
//! pool allocation that logs runs the tap) gets nothing.

use core::cell::{RefCell, RefMut};
use core::ptr::{self, NonNull};

use ngx::ffi::{
    ngx_log_t, ngx_peer_connection_t, ngx_stream_session_t, ngx_stream_upstream_srv_conf_t,
    ngx_stream_upstream_state_t, ngx_stream_upstream_t, NGX_STREAM_MODULE,
};
use upstream_cause_core::classify::Session;
use upstream_cause_core::observed::heard;
use upstream_cause_core::{classify, summarize, At, End, MessageKind, Observation, Observed, State, Summary};

/// A stream upstream group of the running configuration: the counters'
/// label of an attempt. Groups live as long as their cycle, which
/// outlives its sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group(NonNull<ngx_stream_upstream_srv_conf_t>);

impl Group {
    /// The group `u` is on.
    pub fn of(u: &ngx_stream_upstream_t) -> Option<Group> {
        NonNull::new(u.upstream).map(Group)
    }

    pub fn conf(&self) -> &ngx_stream_upstream_srv_conf_t {
        // SAFETY: a group of the session's cycle (see the type).
        unsafe { self.0.as_ref() }
    }
}

/// A session's context: what was observed of its attempts.
pub struct Ctx {
    observed: RefCell<Observed<Group>>,
}

/// The session a connection log names: a stream connection's log has the
/// session as its data once nginx made one (a listening socket's log, or
/// the connection's before that, has other data).
fn session_of_log(log: &ngx_log_t) -> Option<&ngx_stream_session_t> {
    let data = log.data;
    if data.is_null() {
        return None;
    }
    // SAFETY: the data of a log is an object of at least four bytes (a
    // session, a listening socket's address string): its first four are
    // read, whatever their alignment, to tell a session, whose first field
    // is its signature, "STRM".
    let signature = unsafe { ptr::read_unaligned(data.cast::<u32>()) };
    // SAFETY: a session of the connection, live while nginx logs for it.
    (signature == NGX_STREAM_MODULE).then(|| unsafe { &*data.cast::<ngx_stream_session_t>() })
}

/// The session `pc` is the upstream peer of, and that upstream.
fn session_of_peer(pc: &ngx_peer_connection_t) -> Option<(&ngx_stream_session_t, &ngx_stream_upstream_t)> {
    // SAFETY: pc->log is the session's connection log (set by the proxy).
    let s = session_of_log(unsafe { pc.log.as_ref()? })?;
    // SAFETY: the session's upstream, null or live while the session is.
    let u = unsafe { s.upstream.as_ref()? };
    ptr::eq(&u.peer, pc).then_some((s, u))
}

/// The session's context, if a failure signal made one.
pub fn get(s: &ngx_stream_session_t) -> Option<&Ctx> {
    // SAFETY: a live session's ctx array has an entry per stream module;
    // ours is null or the Ctx we put there.
    unsafe {
        s.ctx
            .as_ref()
            .map(|_| *s.ctx.add(super::ctx_index()))
            .and_then(|p| p.cast::<Ctx>().as_ref())
    }
}

fn get_or_create(s: &ngx_stream_session_t) -> Option<&Ctx> {
    if let Some(c) = get(s) {
        return Some(c);
    }
    // SAFETY: the live session's connection and its pool.
    let pool = unsafe { ngx::core::Pool::from_ngx_pool((*s.connection).pool) };
    let p = pool.alloc(core::mem::size_of::<Ctx>()).cast::<Ctx>();
    if p.is_null() || s.ctx.is_null() {
        return None;
    }
    // SAFETY: fresh pool memory of Ctx's size and alignment (nginx's pool
    // aligns to a pointer; Ctx needs no more), and our slot of the
    // session's ctx array. Ctx has nothing to drop: the pool frees it.
    unsafe {
        p.write(Ctx {
            observed: RefCell::new(Observed::new()),
        });
        *s.ctx.add(super::ctx_index()) = p.cast();
        Some(&*p)
    }
}

const _: () = assert!(core::mem::align_of::<Ctx>() <= core::mem::align_of::<usize>());
const _: () = assert!(!core::mem::needs_drop::<Ctx>());

impl Ctx {
    pub fn observed(&self) -> Option<core::cell::Ref<'_, Observed<Group>>> {
        self.observed.try_borrow().ok()
    }

    fn observed_mut(&self) -> Option<RefMut<'_, Observed<Group>>> {
        self.observed.try_borrow_mut().ok()
    }
}

/// nginx's upstream states of the session, one per attempt.
pub fn states(s: &ngx_stream_session_t) -> &[ngx_stream_upstream_state_t] {
    // SAFETY: null or the session's array of states.
    match unsafe { s.upstream_states.as_ref() } {
        Some(a) if !a.elts.is_null() => {
            // SAFETY: nelts states at elts, live while the session is.
            unsafe { core::slice::from_raw_parts(a.elts.cast(), a.nelts) }
        }
        _ => &[],
    }
}

/// Where a line nginx logs now belongs: its last state (nginx pushes one
/// as each attempt starts), or before any.
fn current_attempt(s: &ngx_stream_session_t) -> At {
    match states(s).len() {
        0 => At::BeforeAny,
        n => At::Attempt(n - 1),
    }
}

/// The `peer` label of a state: nginx's name of the peer, `-` if none.
pub fn peer_label(st: Option<&ngx_stream_upstream_state_t>) -> &[u8] {
    // SAFETY: a state's peer is null or a string valid for the session.
    st.and_then(|s| unsafe { s.peer.as_ref() })
        .map_or(&b"-"[..], |p| p.as_bytes())
}

/// Our `free` wrapper's call (`crate::slots::balancer!`), guarded.
pub fn on_free(pc: &ngx_peer_connection_t, failed: bool) {
    crate::guard((), || free(pc, failed));
}

/// The balancer's `free`, before the inner free runs: how the attempt
/// ended, with what the session's counters say. A session that ended
/// well leaves here with nothing allocated.
pub fn free(pc: &ngx_peer_connection_t, failed: bool) {
    let Some((s, u)) = session_of_peer(pc) else { return };
    if !super::enabled(s) {
        return;
    }
    let At::Attempt(idx) = current_attempt(s) else { return };
    let end = if failed { End::Failed } else { End::Finalized };
    let obs = snapshot(s, u, pc, end);
    let ctx = match get(s) {
        Some(c) => c,
        // nothing heard, nothing failed: the success path ends here
        None if !failed && classify(&obs).is_none() => return,
        None => match get_or_create(s) {
            Some(c) => c,
            None => return,
        },
    };
    if let Some(mut o) = ctx.observed_mut() {
        o.end(idx, end, obs, Group::of(u));
    }
}

/// The attempt and the session as they are now, before the inner free.
fn snapshot(s: &ngx_stream_session_t, u: &ngx_stream_upstream_t, pc: &ngx_peer_connection_t, end: End) -> Observation {
    let mut o = Observation {
        end,
        ..Default::default()
    };
    crate::peer::connection_flags(pc, &mut o);
    // SAFETY: u.state is the attempt's live state.
    if let Some(st) = unsafe { u.state.as_ref() } {
        o.connected = st.connect_time != ngx::ffi::ngx_msec_t::MAX;
    }
    let mut session = Session {
        client_sent: s.received > 0,
        upstream_sent: u.received > 0,
        // SAFETY: nginx's globals, set by the worker's signal handling.
        shutdown: unsafe { ngx::ffi::ngx_exiting != 0 || ngx::ffi::ngx_terminate != 0 },
        ..Default::default()
    };
    // SAFETY: the session's client connection, live while it is.
    if let Some(c) = unsafe { s.connection.as_ref() } {
        o.client_error = c.error() != 0;
        session.udp = c.type_ == libc::SOCK_DGRAM;
        session.shutdown |= c.close() != 0;
        // SAFETY: a live connection's events are valid.
        if let (Some(rd), Some(wr)) = unsafe { (c.read.as_ref(), c.write.as_ref()) } {
            session.client_ended = rd.eof() != 0 || rd.error() != 0 || wr.error() != 0;
        }
    }
    o.session = Some(session);
    o
}

/// An error line nginx wrote on a log the tap is on: recorded for the
/// attempt of the session it is about, if it is an upstream failure and
/// the module is on there.
pub fn line(log: &ngx_log_t, line: &[u8]) {
    let Some(s) = session_of_log(log) else { return };
    // A server's log is tapped for all its lines: those of sessions that
    // are not proxied are not read.
    // SAFETY: the session's upstream, null or live while the session is.
    let Some(u) = (unsafe { s.upstream.as_ref() }) else {
        return;
    };
    if !super::enabled(s) {
        return;
    }
    let Some(heard) = heard(line, crate::tap::action(log)) else {
        return;
    };
    let no_live = heard.message.kind == MessageKind::NoLiveUpstreams;
    let at = current_attempt(s);
    let Some(ctx) = get_or_create(s) else { return };
    let Some(mut o) = ctx.observed_mut() else { return };
    o.hear(at, heard);
    // nginx logs "no live upstreams" right after the balancer's get found
    // no peer to give; free is not called for it. The group's peers say
    // now whether they are all down or all busy.
    if let (true, At::Attempt(idx)) = (no_live, at) {
        // SAFETY: the session's upstream group, live for the cycle.
        let saturated = unsafe { u.upstream.as_mut() }.is_some_and(super::saturation::saturated);
        let obs = Observation {
            saturated,
            ..Default::default()
        };
        o.end(idx, End::NoLivePeer, obs, Group::of(u));
    }
}

/// What the session reports, from its records and nginx's states. The
/// session's `$status` (0 until nginx sets it, when it ends the session)
/// goes with its last attempt.
pub fn summary(s: &ngx_stream_session_t, observed: Option<&Observed<Group>>) -> Summary<Group> {
    let all = states(s);
    let status = u16::try_from(s.status).unwrap_or(0);
    let states = all.iter().enumerate().map(|(i, st)| State {
        status: if i + 1 == all.len() { status } else { 0 },
        header_received: false,
        has_peer: !st.peer.is_null(),
    });
    // SAFETY: the session's upstream, null or live while the session is.
    let current = unsafe { s.upstream.as_ref() }.and_then(Group::of);
    summarize(observed, states, current, status)
}
