//! Wrapping every upstream's balancer to observe each attempt.
//!
//! Like the keepalive module: in postconfiguration (after every
//! `init_upstream` ran) each `uscf->peer.init` is replaced by ours; ours
//! calls the original, then wraps `get`/`free` (and, since we replace
//! `peer.data`, `notify`/`set_session`/`save_session`). Being the outermost
//! wrapper composes with keepalive, hash, least_conn and the rest.

use core::ffi::c_void;
use core::ptr;

use ngx::core::{Pool, Status};
use ngx::ffi::{
    ngx_conf_t, ngx_event_free_peer_pt, ngx_event_get_peer_pt, ngx_event_notify_peer_pt,
    ngx_event_save_peer_session_pt, ngx_event_set_peer_session_pt, ngx_http_request_t, ngx_http_upstream_init_peer_pt,
    ngx_http_upstream_srv_conf_t, ngx_http_upstream_t, ngx_int_t, ngx_msec_t, ngx_peer_connection_t, ngx_uint_t,
    NGX_BUSY, NGX_ERROR, NGX_OK, NGX_PEER_FAILED,
};
use ngx::http::{HttpModuleMainConf, NgxHttpUpstreamModule};
use upstream_cause_core::{End, Observation};

use crate::ctx::{self, Ctx};

/// The original `peer.init` of one upstream.
#[derive(Clone, Copy)]
struct Wrapped {
    uscf: *const ngx_http_upstream_srv_conf_t,
    init: ngx_http_upstream_init_peer_pt,
}

/// The originals, sorted by `uscf` address; lives in the cycle pool.
pub struct Table {
    entries: *const Wrapped,
    len: usize,
}

impl Table {
    pub const fn empty() -> Table {
        Table {
            entries: ptr::null(),
            len: 0,
        }
    }

    fn as_slice(&self) -> &[Wrapped] {
        if self.entries.is_null() {
            return &[];
        }
        // SAFETY: built in `wrap_all` from the cycle pool, `len` entries.
        unsafe { core::slice::from_raw_parts(self.entries, self.len) }
    }

    fn find(&self, uscf: *const ngx_http_upstream_srv_conf_t) -> ngx_http_upstream_init_peer_pt {
        let s = self.as_slice();
        s.binary_search_by_key(&(uscf as usize), |w| w.uscf as usize)
            .ok()
            .and_then(|i| s[i].init)
    }
}

/// Replaces `peer.init` of every upstream (explicit `upstream {}` blocks and
/// the implicit ones of `proxy_pass http://addr`).
///
/// # Safety
/// Called from postconfiguration with nginx's valid `cf`.
pub unsafe fn wrap_all(cf: *mut ngx_conf_t, table: &mut Table) -> Result<(), ()> {
    // SAFETY: nginx's cf during the http block.
    let Some(umcf) = NgxHttpUpstreamModule::main_conf(unsafe { &*cf }) else {
        return Ok(());
    };
    // SAFETY: `upstreams` is an array of uscf pointers.
    let upstreams = unsafe { umcf.upstreams.as_slice::<*mut ngx_http_upstream_srv_conf_t>() };
    if upstreams.is_empty() {
        return Ok(());
    }
    // SAFETY: cf->pool is the cycle pool.
    let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
    let mem = pool
        .alloc(core::mem::size_of::<Wrapped>() * upstreams.len())
        .cast::<Wrapped>();
    if mem.is_null() {
        return Err(());
    }
    let mut n = 0;
    for &uscf in upstreams {
        // SAFETY: valid uscf pointers owned by the upstream module.
        let Some(us) = (unsafe { uscf.as_mut() }) else { continue };
        if us.peer.init.is_none() || us.peer.init.map(|f| f as usize) == Some(init_peer as *const () as usize) {
            continue;
        }
        // SAFETY: n < upstreams.len(), within the allocation.
        unsafe {
            mem.add(n).write(Wrapped {
                uscf,
                init: us.peer.init,
            })
        };
        us.peer.init = Some(init_peer);
        n += 1;
    }
    // SAFETY: the first n entries are initialised.
    let slice = unsafe { core::slice::from_raw_parts_mut(mem, n) };
    slice.sort_unstable_by_key(|w| w.uscf as usize);
    *table = Table { entries: mem, len: n };
    Ok(())
}

/// Bytes of request pool the balancer wrapper takes per request.
pub const PEER_DATA_BYTES: usize = core::mem::size_of::<PeerData>();

/// Our data in `u->peer.data`; the inner balancer's data and callbacks.
#[derive(Clone, Copy)]
struct PeerData {
    r: *mut ngx_http_request_t,
    us: *const ngx_http_upstream_srv_conf_t,
    u: *mut ngx_http_upstream_t,
    ctx: *mut Ctx,
    data: *mut c_void,
    get: ngx_event_get_peer_pt,
    free: ngx_event_free_peer_pt,
    notify: ngx_event_notify_peer_pt,
    set_session: ngx_event_set_peer_session_pt,
    save_session: ngx_event_save_peer_session_pt,
    /// Index in `r->upstream_states` of the attempt in progress.
    idx: usize,
}

extern "C" fn init_peer(r: *mut ngx_http_request_t, us: *mut ngx_http_upstream_srv_conf_t) -> ngx_int_t {
    crate::guard(NGX_ERROR as ngx_int_t, || {
        let Some(orig) = crate::main_conf_table().and_then(|t| t.find(us)) else {
            return NGX_ERROR as ngx_int_t;
        };
        // SAFETY: the original peer.init, called as nginx would have.
        let rc = unsafe { orig(r, us) };
        if rc != NGX_OK as ngx_int_t || !crate::enabled_for(r) {
            return rc;
        }
        // SAFETY: r is live and its upstream was just initialised.
        unsafe { install(r, us) };
        rc
    })
}

/// # Safety
/// `r` is a live request whose `u->peer` the original init just set up.
unsafe fn install(r: *mut ngx_http_request_t, us: *const ngx_http_upstream_srv_conf_t) {
    // SAFETY: per the contract.
    let Some(u) = (unsafe { (*r).upstream.as_mut() }) else {
        return;
    };
    let Some(ctx) = ctx::get_or_create(r) else { return };
    // SAFETY: r's pool is live.
    let pool = unsafe { Pool::from_ngx_pool((*r).pool) };
    let pd = pool.alloc_type::<PeerData>();
    if pd.is_null() {
        return; // no wrapping: nginx works exactly as without us
    }
    let up: *mut ngx_http_upstream_t = u;
    let p = &mut u.peer;
    // SAFETY: fresh pool memory for one PeerData.
    unsafe {
        pd.write(PeerData {
            r,
            us,
            u: up,
            ctx,
            data: p.data,
            get: p.get,
            free: p.free,
            notify: p.notify,
            set_session: p.set_session,
            save_session: p.save_session,
            idx: 0,
        })
    };
    p.data = pd.cast();
    p.get = Some(get_peer);
    p.free = Some(free_peer);
    if p.notify.is_some() {
        p.notify = Some(notify_peer);
    }
    p.set_session = Some(set_session);
    p.save_session = Some(save_session);
}

/// # Safety
/// `data` is the PeerData `install` put in `u->peer.data`.
unsafe fn peer_data<'a>(data: *mut c_void) -> Option<&'a mut PeerData> {
    // SAFETY: per the contract.
    unsafe { data.cast::<PeerData>().as_mut() }
}

unsafe extern "C" fn get_peer(pc: *mut ngx_peer_connection_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx calls get with u->peer and u->peer.data (ours).
    let Some(pd) = (unsafe { peer_data(data) }) else {
        return NGX_ERROR as ngx_int_t;
    };
    let Some(inner) = pd.get else {
        return NGX_ERROR as ngx_int_t;
    };
    // SAFETY: the inner balancer's get with its own data.
    let rc = unsafe { inner(pc, pd.data) };
    crate::guard((), || {
        // SAFETY: pd.u is the live upstream of pd.r.
        let Some(idx) = ctx::state_index(pd.r, unsafe { (*pd.u).state }) else {
            return;
        };
        pd.idx = idx;
        // SAFETY: the ctx lives in pd.r's pool.
        let Some(ctx) = (unsafe { pd.ctx.as_mut() }) else {
            return;
        };
        // SAFETY: the request's connection log is live.
        unsafe { ctx.tap.arm((*(*pd.r).connection).log) };
        if rc == NGX_BUSY as ngx_int_t {
            ctx::record_end(ctx, idx, End::NoLivePeer, Observation::default(), pd.us);
        }
    });
    rc
}

const UNSET_MSEC: ngx_msec_t = ngx_msec_t::MAX;

/// What the attempt looks like right now, before the inner free runs.
///
/// # Safety
/// `pc` is `u->peer` of the live request `pd.r`.
unsafe fn snapshot(pd: &PeerData, pc: &ngx_peer_connection_t) -> Observation {
    // SAFETY: per the contract, u and r are live.
    let (u, r) = unsafe { (&*pd.u, &*pd.r) };
    let mut o = Observation {
        reused: pc.cached() != 0,
        ..Default::default()
    };
    // SAFETY: pc.connection is null or the live peer connection.
    if let Some(c) = unsafe { pc.connection.as_ref() } {
        o.connection = true;
        // SAFETY: a live connection's events are valid.
        if let (Some(rd), Some(wr)) = unsafe { (c.read.as_ref(), c.write.as_ref()) } {
            o.read_eof = rd.eof() != 0;
            o.read_error = rd.error() != 0;
            o.read_timedout = rd.timedout() != 0;
            o.write_error = wr.error() != 0;
            o.write_timedout = wr.timedout() != 0;
        }
        // SAFETY: c.ssl is null or the live SSL connection.
        if let Some(ssl) = unsafe { c.ssl.as_ref() } {
            o.ssl = true;
            o.ssl_handshaked = ssl.handshaked() != 0;
        }
    }
    // SAFETY: u.state is the attempt's live state.
    if let Some(st) = unsafe { u.state.as_ref() } {
        o.connected = st.connect_time != UNSET_MSEC;
        o.header_received = st.header_time != UNSET_MSEC;
    }
    o.request_sent = u.request_body_sent() != 0;
    o.header_sent = u.header_sent() != 0;
    // SAFETY: r.connection is the live client connection.
    o.client_error = unsafe { (*r.connection).error() } != 0;
    let b = &u.buffer;
    if !b.start.is_null() && !o.header_received {
        o.header_bytes = u32::try_from((b.last as usize).saturating_sub(b.start as usize)).unwrap_or(u32::MAX);
        o.buffer_full = b.last == b.end;
    }
    o
}

unsafe extern "C" fn free_peer(pc: *mut ngx_peer_connection_t, data: *mut c_void, state: ngx_uint_t) {
    // SAFETY: nginx calls free with u->peer and u->peer.data (ours).
    let Some(pd) = (unsafe { peer_data(data) }) else { return };
    crate::guard((), || {
        // SAFETY: pc is u->peer of the live request.
        let Some(pcr) = (unsafe { pc.as_ref() }) else { return };
        // SAFETY: the ctx lives in pd.r's pool.
        let Some(ctx) = (unsafe { pd.ctx.as_mut() }) else {
            return;
        };
        let failed = state & NGX_PEER_FAILED as ngx_uint_t != 0;
        // SAFETY: called before the inner free, as nginx's own order has it.
        let obs = unsafe { snapshot(pd, pcr) };
        let seen = ctx.recorded(pd.idx).is_some();
        if failed || seen || obs.client_error {
            ctx::record_end(
                ctx,
                pd.idx,
                if failed { End::Failed } else { End::Finalized },
                obs,
                pd.us,
            );
        }
    });
    if let Some(inner) = pd.free {
        // SAFETY: the inner balancer's free with its own data.
        unsafe { inner(pc, pd.data, state) };
    }
}

unsafe extern "C" fn notify_peer(pc: *mut ngx_peer_connection_t, data: *mut c_void, ty: ngx_uint_t) {
    // SAFETY: our data; the inner notify with its own data.
    if let Some(pd) = unsafe { peer_data(data) } {
        if let Some(inner) = pd.notify {
            unsafe { inner(pc, pd.data, ty) };
        }
    }
}

unsafe extern "C" fn set_session(pc: *mut ngx_peer_connection_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: our data; the inner callback with its own data.
    match unsafe { peer_data(data) } {
        Some(PeerData {
            set_session: Some(inner),
            data,
            ..
        }) => unsafe { inner(pc, *data) },
        _ => Status::NGX_OK.into(),
    }
}

unsafe extern "C" fn save_session(pc: *mut ngx_peer_connection_t, data: *mut c_void) {
    // SAFETY: our data; the inner callback with its own data.
    if let Some(PeerData {
        save_session: Some(inner),
        data,
        ..
    }) = unsafe { peer_data(data) }
    {
        unsafe { inner(pc, *data) };
    }
}
