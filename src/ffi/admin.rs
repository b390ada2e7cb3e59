//! The RPC commands' side of the store (`push_redirect.list`, `.get`,
//! `.set`, `.remove`, `.stats`): arguments checked, defaults applied and
//! replies computed here, so that the module's RPC code only carries
//! values between Kamailio's RPC API and these functions. A provisioned
//! target passes the same policy as a redirect ([`check_target`]).

use super::engine::EngineBox;
use super::{
    clip, ffi_boundary, free_handle, pr_bytes, pr_engine, pr_status, slice, text, to_handle,
    try_handle, try_mut, Castable,
};
use crate::engine::{check_target, service_key, Host, Place, Refused, MAX_SERVICE_LEN};
use crate::forwarding::{ForwardTarget, ForwardingKind};
use crate::store::{Entry, Store, StoreError, ANY_SERVICE};
use crate::uri;

/// One stored forwarding, as `pr_entries_get` describes it. The byte strings
/// borrow from the list and stay valid until `pr_entries_free`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pr_entry {
    /// The AOR (`sip:user@host`).
    pub aor: pr_bytes,
    /// The service (`MESSAGE:text/plain`, `NOTIFY:ua-profile`) or `*`.
    pub service: pr_bytes,
    /// `permanent`, `temporary` or `provisioned`.
    pub kind: pr_bytes,
    /// The targets, best first: `uri;q=0.5, uri2` (q only when set); a
    /// target that names a registered terminal by its instance adds
    /// ` (instance VALUE)`: it is that terminal's current contact.
    pub targets: pr_bytes,
    /// The contact whose reply taught it (empty for provisioned ones).
    pub learned_from: pr_bytes,
    /// Unix time it expires; -1: never.
    pub expires_at: i64,
    /// Seconds until it expires, at the time of the listing; -1: never.
    pub expires_in: i64,
    /// Unix time it was stored.
    pub created_at: i64,
    /// The status code it was learned from (0 for provisioned ones).
    pub learned_status: u32,
}

/// Opaque: a list of stored forwardings (`pr_rpc_list`).
pub struct pr_entries {
    _private: [u8; 0],
}

impl Castable for pr_entries {
    type RustType = Vec<EntryText>;
}

pub(crate) struct EntryText {
    aor: String,
    service: String,
    kind: &'static str,
    targets: String,
    learned_from: String,
    expires_at: i64,
    expires_in: i64,
    created_at: i64,
    learned_status: u32,
}

impl EntryText {
    fn of(e: &Entry, now: i64) -> Self {
        let targets = e
            .targets
            .iter()
            .map(|t| {
                let mut s = match t.q {
                    Some(q) => format!("{};q={}.{:03}", t.uri, q / 1000, q % 1000),
                    None => t.uri.clone(),
                };
                if let Some(i) = &t.instance {
                    s.push_str(&format!(" (instance {})", i.instance));
                }
                s
            })
            .collect::<Vec<_>>()
            .join(", ");
        EntryText {
            aor: e.aor.clone(),
            service: e.service.clone(),
            kind: e.kind.name(),
            targets,
            learned_from: e.learned_from.clone().unwrap_or_default(),
            expires_at: e.expires_at.unwrap_or(-1),
            expires_in: e.expires_at.map_or(-1, |t| t.saturating_sub(now).max(0)),
            created_at: e.created_at,
            learned_status: e.learned_status.map_or(0, u32::from),
        }
    }
}

/// Reads an AOR argument: a `sip:`/`sips:` URI of one of the proxy's own
/// domains, returned in its stored form (`sip:user@host`).
fn rpc_aor(e: &EngineBox, raw: &[u8]) -> Result<String, pr_status> {
    let u = uri::parse(raw).map_err(|err| {
        e.fail(
            pr_status::InvalidArgument,
            format!("AOR {:?}: {}", clip(&String::from_utf8_lossy(raw)), err),
        )
    })?;
    if u.user.is_none() || !e.is_self(u.host, u.port) {
        return Err(e.fail(
            pr_status::InvalidArgument,
            format!("AOR {}: not a user of this proxy's domains", u.aor()),
        ));
    }
    Ok(u.aor())
}

/// Lists the live forwardings of `aor` (empty: of every AOR) into `*out`
/// (free with `pr_entries_free`). `PR_STATUS_INVALID_ARGUMENT` for a bad AOR,
/// `PR_STATUS_STORE_ERROR` without a store; see `pr_engine_last_error`.
#[no_mangle]
pub extern "C" fn pr_rpc_list(
    engine: *const pr_engine,
    aor: *const u8,
    aor_len: usize,
    out: *mut *mut pr_entries,
) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let e = try_handle!(engine, pr_status::NullParameter);
        e.begin_call();
        if out.is_null() {
            return pr_status::NullParameter;
        }
        // SAFETY: (ptr, len) per the contract.
        let raw = match unsafe { slice(aor, aor_len) } {
            Ok(r) => r,
            Err(st) => return st,
        };
        let filter = if raw.is_empty() {
            None
        } else {
            match rpc_aor(e, raw) {
                Ok(a) => Some(a),
                Err(st) => return st,
            }
        };
        let store = match e.store() {
            Ok(s) => s,
            Err(st) => return st,
        };
        match store.list(filter.as_deref(), e.now()) {
            Ok(rows) => {
                let now = e.now();
                let rows: Vec<EntryText> = rows.iter().map(|r| EntryText::of(r, now)).collect();
                to_handle(Box::new(rows), out);
                pr_status::Ok
            }
            Err(err) => e.store_failed("list", &err),
        }
    })
}

/// Number of entries in a list (0 for NULL).
#[no_mangle]
pub extern "C" fn pr_entries_count(list: *const pr_entries) -> usize {
    ffi_boundary!(0, { try_handle!(list, 0).len() })
}

/// Describes entry `index` of a list into `*out` (strings borrowed from the
/// list). `PR_STATUS_OUT_OF_RANGE` past the end.
#[no_mangle]
pub extern "C" fn pr_entries_get(
    list: *const pr_entries,
    index: usize,
    out: *mut pr_entry,
) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let list = try_handle!(list, pr_status::NullParameter);
        let out = try_mut!(out, pr_status::NullParameter);
        let Some(r) = list.get(index) else {
            return pr_status::OutOfRange;
        };
        *out = pr_entry {
            aor: pr_bytes::of(r.aor.as_bytes()),
            service: pr_bytes::of(r.service.as_bytes()),
            kind: pr_bytes::of(r.kind.as_bytes()),
            targets: pr_bytes::of(r.targets.as_bytes()),
            learned_from: pr_bytes::of(r.learned_from.as_bytes()),
            expires_at: r.expires_at,
            expires_in: r.expires_in,
            created_at: r.created_at,
            learned_status: r.learned_status,
        };
        pr_status::Ok
    })
}

/// Frees a list. NULL is ignored.
#[no_mangle]
pub extern "C" fn pr_entries_free(list: *mut pr_entries) {
    ffi_boundary!((), {
        drop(free_handle(list));
    })
}

/// Longest TTL `pr_rpc_set` accepts: ten years, in seconds.
pub const PR_MAX_TTL: u32 = 315_360_000;

/// Reads a service argument: empty or `*` for every service, else
/// `METHOD` or `METHOD:detail` (method upper-cased, detail lower-cased).
fn rpc_service(e: &EngineBox, raw: &str) -> Result<String, pr_status> {
    let raw = raw.trim();
    if raw.is_empty() || raw == ANY_SERVICE {
        return Ok(ANY_SERVICE.to_string());
    }
    let (method, detail) = match raw.split_once(':') {
        Some((m, d)) => (m, Some(d)),
        None => (raw, None),
    };
    let ok_method = !method.is_empty() && method.bytes().all(|c| c.is_ascii_alphabetic());
    let ok_detail = detail.is_none_or(|d| {
        !d.is_empty()
            && d.bytes()
                .all(|c| crate::chars::is(c, crate::chars::TOKEN) || c == b'/')
    });
    if !ok_method || !ok_detail || raw.len() > MAX_SERVICE_LEN {
        return Err(e.fail(
            pr_status::InvalidArgument,
            format!(
                "service {raw:?}: expected METHOD or METHOD:type (e.g. MESSAGE:text/plain) or *"
            ),
        ));
    }
    Ok(service_key(
        method,
        detail.map(str::as_bytes),
        detail.map(str::as_bytes),
    ))
}

/// `push_redirect.set aor target [service] [ttl_seconds]`: provisions a
/// forwarding of `aor` (one of the proxy's users) to `target` for `service`
/// (empty: `*`, every service) for `ttl` seconds (empty: no expiry), kind
/// provisioned. The target must pass the same policy as a redirect (sip: or
/// sips:, a local AOR or an allowed domain). On any bad argument nothing is
/// written: `PR_STATUS_INVALID_ARGUMENT`, reason in `pr_engine_last_error`.
#[no_mangle]
pub extern "C" fn pr_rpc_set(
    engine: *const pr_engine,
    aor: *const u8,
    aor_len: usize,
    target: *const u8,
    target_len: usize,
    service: *const u8,
    service_len: usize,
    ttl: *const u8,
    ttl_len: usize,
) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let e = try_handle!(engine, pr_status::NullParameter);
        e.begin_call();
        // SAFETY: (ptr, len) pairs per the contract.
        let args = unsafe {
            (
                slice(aor, aor_len),
                text(target, target_len),
                text(service, service_len),
                text(ttl, ttl_len),
            )
        };
        let (aor, target, service, ttl) = match args {
            (Ok(a), Ok(t), Ok(s), Ok(l)) => (a, t, s, l),
            (Err(st), ..) | (_, Err(st), ..) | (_, _, Err(st), _) | (.., Err(st)) => {
                return e.fail(st, st.to_string())
            }
        };
        let aor = match rpc_aor(e, aor) {
            Ok(a) => a,
            Err(st) => return st,
        };
        let bad = |why: String| e.fail(pr_status::InvalidArgument, why);
        let target = target.trim();
        let t = match uri::parse(target.as_bytes()) {
            Ok(t) => t,
            Err(err) => return bad(format!("target {:?}: {}", clip(target), err)),
        };
        // The policy a redirect's Contact passes, for the AOR's scheme; a
        // foreign target needs an allowed domain (no registration vouches
        // for it here).
        match check_target(&e.engine.config, e, aor.starts_with("sips:"), &t) {
            Ok(Place::Local | Place::Foreign { allowed: true }) => {}
            Ok(Place::Foreign { allowed: false }) => {
                return bad(format!("target {target}: {}", Refused::DomainNotAllowed))
            }
            Err(why) => return bad(format!("target {target}: {why}")),
        }
        if uri::parse(aor.as_bytes()).is_ok_and(|a| a.same_target(&t)) {
            return bad(format!("target {target}: the AOR itself"));
        }
        let service = match rpc_service(e, service) {
            Ok(s) => s,
            Err(st) => return st,
        };
        let ttl = ttl.trim();
        let ttl = if ttl.is_empty() {
            None
        } else {
            match ttl.parse::<u32>() {
                Ok(v) if (1..=PR_MAX_TTL).contains(&v) => Some(v),
                _ => return bad(format!("ttl {ttl:?}: expected seconds in 1..{PR_MAX_TTL}")),
            }
        };
        let store = match e.store() {
            Ok(s) => s,
            Err(st) => return st,
        };
        let now = e.now();
        let entry = Entry {
            aor,
            service,
            kind: ForwardingKind::Provisioned,
            targets: vec![ForwardTarget {
                uri: target.to_string(),
                q: None,
                instance: None,
            }],
            expires_at: ttl.map(|t| now.saturating_add(i64::from(t))),
            created_at: now,
            learned_from: None,
            learned_status: None,
        };
        match entry.validate().and_then(|()| store.put(&entry)) {
            Ok(()) => pr_status::Ok,
            Err(StoreError::TooBig { .. }) | Err(StoreError::Invalid(_)) => {
                bad("the forwarding does not fit the store's limits".into())
            }
            Err(err) => e.store_failed("set", &err),
        }
    })
}

/// `push_redirect.remove aor [service]`: removes the forwarding of `aor` for
/// `service` (empty: every service), learned or provisioned. `*out_removed`
/// gets how many entries went.
#[no_mangle]
pub extern "C" fn pr_rpc_remove(
    engine: *const pr_engine,
    aor: *const u8,
    aor_len: usize,
    service: *const u8,
    service_len: usize,
    out_removed: *mut usize,
) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let e = try_handle!(engine, pr_status::NullParameter);
        e.begin_call();
        if out_removed.is_null() {
            return pr_status::NullParameter;
        }
        // SAFETY: (ptr, len) pairs per the contract.
        let (aor, service) = match unsafe { (slice(aor, aor_len), text(service, service_len)) } {
            (Ok(a), Ok(s)) => (a, s),
            (Err(st), _) | (_, Err(st)) => return e.fail(st, st.to_string()),
        };
        let aor = match rpc_aor(e, aor) {
            Ok(a) => a,
            Err(st) => return st,
        };
        let service = if service.trim().is_empty() {
            None
        } else {
            match rpc_service(e, service) {
                Ok(s) => Some(s),
                Err(st) => return st,
            }
        };
        let store = match e.store() {
            Ok(s) => s,
            Err(st) => return st,
        };
        match store.remove(&aor, service.as_deref()) {
            Ok(n) => {
                // SAFETY: checked non-NULL above; writable by contract.
                unsafe { *out_removed = n };
                pr_status::Ok
            }
            Err(err) => e.store_failed("remove", &err),
        }
    })
}

/// The number of live forwardings in the store into `*out`.
#[no_mangle]
pub extern "C" fn pr_engine_store_count(engine: *const pr_engine, out: *mut usize) -> pr_status {
    ffi_boundary!(pr_status::Panic, {
        let e = try_handle!(engine, pr_status::NullParameter);
        e.begin_call();
        if out.is_null() {
            return pr_status::NullParameter;
        }
        let store = match e.store() {
            Ok(s) => s,
            Err(st) => return st,
        };
        match store.count(e.now()) {
            Ok(n) => {
                // SAFETY: checked non-NULL above; writable by contract.
                unsafe { *out = n };
                pr_status::Ok
            }
            Err(err) => e.store_failed("count", &err),
        }
    })
}
