//! `upstream_cause_zone` and `upstream_cause_metrics`: the counters in a
//! shared-memory zone (nginx slab pool), shared by all workers and kept
//! across reloads, and their Prometheus scrape.
//!
//! The table's logic and rendering are in `upstream_cause_core::metrics`;
//! this file places the table in the zone, serialises access with the slab
//! pool's mutex and serves the scrape.

use core::alloc::Layout;
use core::ffi::{c_char, c_void};
use core::ptr::{self, NonNull};

use ngx::allocator::Allocator;
use ngx::core::{Buffer, SlabPool, Status, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_http_request_t, ngx_http_upstream_srv_conf_t, ngx_int_t, ngx_pagesize,
    ngx_parse_size, ngx_shared_memory_add, ngx_shm_zone_t, ngx_str_t, ngx_uint_t, NGX_HTTP_GET, NGX_HTTP_HEAD,
    NGX_HTTP_NOT_ALLOWED, NGX_HTTP_UPSTREAM_CREATE, NGX_LOG_EMERG, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule, Request};
use ngx::{ngx_conf_log_error, ngx_log_error};
use upstream_cause_core::metrics::{count, render_prometheus, Counted, Header, Key, Series};
use upstream_cause_core::render::{fmt_u64, Entry, FixedBuf, Sink};

use crate::ctx::{Ctx, BEFORE_ANY};
use crate::{MainConf, Module};

/// Marks a table of this layout (changed layouts start afresh).
const MAGIC: u64 = 0x7563_7a6f_6e65_0002;

/// What the zone holds: bookkeeping, then `capacity` series.
#[repr(C)]
struct Shared {
    magic: u64,
    capacity: u64,
    header: Header,
}

impl Shared {
    fn slots(&mut self) -> &mut [Series] {
        // SAFETY: `init_table` allocated `capacity` series right after the
        // header, zeroed (a zeroed Series is a free slot).
        unsafe {
            let first = ptr::from_mut(self).add(1).cast::<Series>();
            core::slice::from_raw_parts_mut(first, self.capacity as usize)
        }
    }
}

const _: () = assert!(core::mem::size_of::<Shared>() % core::mem::align_of::<Series>() == 0);

/// Bytes of zone per series.
pub const SERIES_BYTES: usize = core::mem::size_of::<Series>();

/// `upstream_cause_zone name size;`
pub extern "C" fn set_zone(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    crate::guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx passes our MainConf for NGX_HTTP_MAIN_CONF_OFFSET.
        let mcf = unsafe { &mut *conf.cast::<MainConf>() };
        // SAFETY: the parser's cf, with the directive and its two arguments.
        let args = unsafe { (*(*cf).args).as_slice_mut::<ngx_str_t>() };
        // SAFETY: cmd is our command.
        let dname_bytes = unsafe { (*cmd).name.as_bytes() };
        if !mcf.zone.is_null() {
            return crate::conf::duplicate(cf, dname_bytes);
        }
        let dname = String::from_utf8_lossy(dname_bytes).into_owned();
        let mut name = args[1];
        if name.len == 0 {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "invalid zone name \"\" in \"{}\" directive", dname);
            return NGX_CONF_ERROR;
        }
        let size_arg = crate::conf::shown(args[2].as_bytes());
        // SAFETY: a configuration argument.
        let size = unsafe { ngx_parse_size(&mut args[2]) };
        if size < 0 {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "invalid zone size \"{}\" in \"{}\" directive",
                size_arg,
                dname
            );
            return NGX_CONF_ERROR;
        }
        // SAFETY: set by nginx at startup.
        let least = 8 * unsafe { ngx_pagesize };
        if (size as usize) < least {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "zone size \"{}\" in \"{}\" directive is too small, the least is {}k",
                size_arg,
                dname,
                least / 1024
            );
            return NGX_CONF_ERROR;
        }
        // SAFETY: nginx's cf; the tag is our module, unique per zone owner.
        let zone = unsafe {
            ngx_shared_memory_add(
                cf,
                &mut name,
                size as usize,
                ptr::addr_of_mut!(crate::ngx_http_upstream_cause_module).cast(),
            )
        };
        // SAFETY: null or the zone nginx registered.
        let Some(z) = (unsafe { zone.as_mut() }) else {
            return NGX_CONF_ERROR;
        };
        if !z.data.is_null() {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "duplicate zone \"{}\" in \"{}\" directive",
                crate::conf::shown(name.as_bytes()),
                dname
            );
            return NGX_CONF_ERROR;
        }
        z.init = Some(init_zone);
        z.data = ptr::from_mut(mcf).cast();
        mcf.zone = zone;
        NGX_CONF_OK
    })
}

/// `upstream_cause_metrics;`
pub extern "C" fn set_metrics(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, _conf: *mut c_void) -> *mut c_char {
    crate::guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx's cf inside a location block.
        let cf_ref = unsafe { &mut *cf };
        let Some(clcf) = NgxHttpCoreModule::location_conf_mut(cf_ref) else {
            return NGX_CONF_ERROR;
        };
        clcf.handler = Some(metrics_handler);
        // SAFETY: the file being parsed (its name may live in a buffer that
        // the include frees: copied into the configuration's pool).
        let (file, line) = unsafe { ((*cf_ref.conf_file).file.name, (*cf_ref.conf_file).line) };
        let pool = cf_ref.pool;
        if let Some(mcf) = Module::main_conf_mut(cf_ref) {
            if mcf.metrics_at.is_none() {
                // SAFETY: the configuration's pool and the name's bytes.
                let copy = unsafe { ngx::ffi::ngx_pstrdup(pool, &file as *const ngx_str_t as *mut ngx_str_t) };
                if copy.is_null() {
                    return NGX_CONF_ERROR;
                }
                mcf.metrics_at = Some((
                    ngx_str_t {
                        len: file.len,
                        data: copy,
                    },
                    line,
                ));
            }
        }
        NGX_CONF_OK
    })
}

/// Checks, at the end of the http block, that a metrics location has a
/// zone; if not, says so at the first `upstream_cause_metrics`, as
/// nginx's parser would have (`... in FILE:LINE`).
pub fn check(cf: *mut ngx_conf_t, mcf: &MainConf) -> Result<(), ()> {
    let Some((file, line)) = mcf.metrics_at else {
        return Ok(());
    };
    if mcf.zone.is_null() {
        // SAFETY: nginx's cf during the http block's postconfiguration.
        let log = unsafe { (*cf).log };
        ngx_log_error!(
            NGX_LOG_EMERG,
            log,
            "\"upstream_cause_metrics\" requires an \"upstream_cause_zone\" in {}:{}",
            String::from_utf8_lossy(file.as_bytes()),
            line
        );
        return Err(());
    }
    Ok(())
}

extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    crate::guard(Status::NGX_ERROR.into(), || {
        // SAFETY: nginx calls init with the zone, its slab pool initialised.
        let z = unsafe { &mut *zone };
        // SAFETY: the zone's memory is mapped and its slab pool set up.
        let Some(mut pool) = (unsafe { SlabPool::from_shm_zone(z) }) else {
            return Status::NGX_ERROR.into();
        };
        // Same name and size across a reload: the mapping, and the table in
        // it, are reused as they are.
        let existing = pool.as_ref().data.cast::<Shared>();
        // SAFETY: null or the table this module put there.
        if unsafe { existing.as_ref() }.is_some_and(|s| s.magic == MAGIC) {
            return Status::NGX_OK.into();
        }
        note_size_change(z);
        match init_table(&pool, z.shm.size) {
            Some(t) => {
                pool.as_mut().data = t.as_ptr().cast();
                Status::NGX_OK.into()
            }
            None => Status::NGX_ERROR.into(),
        }
    })
}

/// The biggest table the zone's slab pool gives, zeroed.
fn init_table(pool: &SlabPool, zone_size: usize) -> Option<NonNull<Shared>> {
    let head = core::mem::size_of::<Shared>();
    let mut capacity = zone_size.saturating_sub(zone_size / 64 + 16 * 1024) / SERIES_BYTES;
    let locked = pool.lock();
    while capacity > 0 {
        let layout = Layout::from_size_align(head + capacity * SERIES_BYTES, 8).ok()?;
        if let Ok(mem) = locked.allocate_zeroed(layout) {
            let shared = mem.cast::<Shared>();
            // SAFETY: fresh zeroed memory of the layout's size.
            unsafe {
                (*shared.as_ptr()).magic = MAGIC;
                (*shared.as_ptr()).capacity = capacity as u64;
            }
            return Some(shared);
        }
        capacity -= (capacity / 32).max(1);
    }
    None
}

/// A zone of the same name with another size in the running configuration:
/// nginx starts it anew, and says so.
fn note_size_change(z: &ngx_shm_zone_t) {
    // SAFETY: during a reload ngx_cycle is still the running cycle.
    let Some(old) = (unsafe { ngx::ffi::ngx_cycle.as_ref() }) else {
        return;
    };
    let mut part = &old.shared_memory.part;
    loop {
        let elts = part.elts.cast::<ngx_shm_zone_t>();
        for i in 0..part.nelts {
            // SAFETY: i < nelts of the list part.
            let o = unsafe { &*elts.add(i) };
            if o.tag == z.tag && o.shm.name.as_bytes() == z.shm.name.as_bytes() && o.shm.size != z.shm.size {
                ngx_log_error!(
                    NGX_LOG_NOTICE,
                    old.log,
                    "upstream_cause_zone \"{}\" size changed from {} to {}: its counters start from zero",
                    String::from_utf8_lossy(z.shm.name.as_bytes()),
                    o.shm.size,
                    z.shm.size
                );
            }
        }
        // SAFETY: null or the next list part.
        match unsafe { part.next.as_ref() } {
            Some(next) => part = next,
            None => break,
        }
    }
}

/// The table of the running configuration's zone, if any.
fn table(mcf: &MainConf) -> Option<(SlabPool, NonNull<Shared>)> {
    // SAFETY: null or the zone registered by `set_zone`, initialised.
    let z = unsafe { mcf.zone.as_ref()? };
    // SAFETY: in a worker the zone stays mapped for the process's life.
    let pool = unsafe { SlabPool::from_shm_zone(z)? };
    let shared = NonNull::new(pool.as_ref().data.cast::<Shared>())?;
    Some((pool, shared))
}

/// A label buffer for a host:port (a host name is at most 253 bytes); the
/// table shortens what is longer than its labels.
struct HostPort {
    buf: [u8; 272],
    len: usize,
}

impl HostPort {
    fn of(parts: &[&[u8]]) -> HostPort {
        let mut l = HostPort { buf: [0; 272], len: 0 };
        let mut out = FixedBuf::new(&mut l.buf);
        for p in parts {
            out.put(p);
        }
        l.len = out.len();
        l
    }
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The `upstream` label: the group's name, or host:port of an implicit
/// upstream (`proxy_pass http://127.0.0.1:8081`, or a variable's value).
fn upstream_label(uscf: *const ngx_http_upstream_srv_conf_t, r: &ngx_http_request_t) -> HostPort {
    // SAFETY: null or an upstream configuration of the running cycle.
    if let Some(us) = unsafe { uscf.as_ref() } {
        if us.flags & NGX_HTTP_UPSTREAM_CREATE as ngx_uint_t != 0 || us.port == 0 {
            return HostPort::of(&[us.host.as_bytes()]);
        }
        let mut port = [0u8; 20];
        return HostPort::of(&[us.host.as_bytes(), b":", fmt_u64(&mut port, u64::from(us.port))]);
    }
    // SAFETY: the request's upstream and its resolved part, if any.
    if let Some(res) = unsafe { r.upstream.as_ref().and_then(|u| u.resolved.as_ref()) } {
        let mut port = [0u8; 20];
        return HostPort::of(&[res.host.as_bytes(), b":", fmt_u64(&mut port, u64::from(res.port))]);
    }
    HostPort::of(&[b"-"])
}

/// Counts the request's failed attempts and, if its final status was
/// produced by an upstream failure (or passed on from the upstream's own
/// 5xx), the response. Runs in the log phase.
pub fn record(req: &ngx_http_request_t, ctx: &Ctx) {
    let Some(mcf) = crate::main_conf() else { return };
    let Some((pool, shared)) = table(mcf) else { return };
    let current_us: *const ngx_http_upstream_srv_conf_t =
        // SAFETY: null or the request's upstream.
        unsafe { req.upstream.as_ref() }.map_or(ptr::null(), |u| u.upstream);
    let final_cause = ctx.final_cause();
    let mut ebuf = [Entry::Separator; 64];
    let entries = ctx.entries(&mut ebuf);
    if final_cause.is_none() && !entries.iter().any(|e| matches!(e, Entry::Attempt(Some(_)))) {
        return;
    }
    let states = ctx.states();
    let mut first_overflow = false;
    {
        let _locked = pool.lock();
        // SAFETY: the table lives in the zone; the slab mutex is held.
        let t = unsafe { &mut *shared.as_ptr() };
        let mut header = t.header;
        let slots = t.slots();
        for (idx, e) in entries.iter().enumerate() {
            let Entry::Attempt(Some(cause)) = *e else { continue };
            let Some(st) = states.get(idx) else { continue };
            let us = ctx.recorded(idx).map_or(current_us, |a| a.upstream);
            let us = if us.is_null() { current_us } else { us };
            let up = upstream_label(us, req);
            // SAFETY: a state's peer is null or a string valid for the request.
            let peer = unsafe { st.peer.as_ref() }.map_or(&b"-"[..], |p| p.as_bytes());
            if let Counted::Overflow { first: true } =
                count(&mut header, slots, &Key::attempt(up.as_bytes(), peer, cause), 1)
            {
                first_overflow = true;
            }
        }
        if let Some((cause, idx)) = final_cause {
            let us = if idx == BEFORE_ANY {
                current_us
            } else {
                ctx.recorded(idx).map_or(
                    current_us,
                    |a| if a.upstream.is_null() { current_us } else { a.upstream },
                )
            };
            let up = upstream_label(us, req);
            let status = u16::try_from(req.headers_out.status).unwrap_or(0);
            if let Counted::Overflow { first: true } =
                count(&mut header, slots, &Key::response(up.as_bytes(), cause, status), 1)
            {
                first_overflow = true;
            }
        }
        t.header = header;
    }
    if first_overflow {
        // SAFETY: the request's connection log is live.
        let log = unsafe { (*req.connection).log };
        // SAFETY: the zone is registered.
        let name = unsafe { (*mcf.zone).shm.name.as_bytes() };
        crate::tap::suspended(|| {
            ngx_log_error!(
                NGX_LOG_WARN,
                log,
                "upstream_cause_zone \"{}\" is full: new series are counted under peer=\"other\" (this is said once)",
                String::from_utf8_lossy(name)
            );
        });
    }
}

/// The scrape: Prometheus text format 0.0.4, GET and HEAD only.
unsafe extern "C" fn metrics_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::guard(Status::NGX_ERROR.into(), || {
        // SAFETY: nginx calls content handlers with a live request.
        let req = unsafe { Request::from_ngx_http_request(r) };
        // SAFETY: the same live request.
        let method = unsafe { (*r).method };
        if method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as ngx_uint_t == 0 {
            return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
        }
        let rc = req.discard_request_body();
        if rc != Status::NGX_OK {
            return rc.into();
        }
        let Some((pool, shared)) = crate::main_conf().and_then(table) else {
            return Status::NGX_ERROR.into();
        };
        let (mut snapshot, header, capacity) = {
            let _locked = pool.lock();
            // SAFETY: the table in the zone; the slab mutex is held.
            let t = unsafe { &mut *shared.as_ptr() };
            let header = t.header;
            let capacity = t.capacity as usize;
            let used: Vec<Series> = t.slots().iter().filter(|s| s.family().is_some()).copied().collect();
            (used, header, capacity)
        };
        let mut text = Text(Vec::with_capacity(1024 + snapshot.len() * 160));
        render_prometheus(&mut text, &mut snapshot, &header, capacity);
        // Label values are nginx's bytes (group names, addresses, a client's
        // Host under `proxy_pass http://$host`), not always UTF-8 as the
        // format wants: what is not is replaced, not refused.
        let body = String::from_utf8_lossy(&text.0);

        req.set_status(ngx::http::HTTPStatus::OK);
        req.set_content_length_n(body.len());
        // SAFETY: the live request's headers; the type string is static.
        unsafe {
            let ct: &'static [u8] = b"text/plain; version=0.0.4";
            (*r).headers_out.content_type = ngx_str_t {
                len: ct.len(),
                data: ct.as_ptr().cast_mut(),
            };
            (*r).headers_out.content_type_len = ct.len();
        }
        let rc = req.send_header();
        if rc == Status::NGX_ERROR || rc.0 > Status::NGX_OK.0 || req.header_only() {
            return rc.into();
        }
        let Some(mut buf) = req.pool().create_buffer_from_str(&body) else {
            return Status::NGX_ERROR.into();
        };
        buf.set_last_buf(req.is_main());
        buf.set_last_in_chain(true);
        let mut out = ngx::ffi::ngx_chain_t {
            buf: buf.as_ngx_buf_mut(),
            next: ptr::null_mut(),
        };
        req.output_filter(&mut out).into()
    })
}

struct Text(Vec<u8>);

impl Sink for Text {
    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}
