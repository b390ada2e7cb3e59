//! The forwarding store (SPEC §2 flows F5–F7, §4 `store`): the forwardings
//! learned from 301/302 replies and the ones provisioned by the operator,
//! per (AOR, service), shared by every Kamailio process of the host and kept
//! across restarts and crashes.
//!
//! One concern per file:
//!
//! - this file: what every backend shares — the [`Store`] trait, the
//!   [`Entry`] it holds and its caps ([`Entry::validate`]), [`StoreError`],
//!   and [`open`], which picks the backend the `store` parameter names;
//! - [`cache`]: [`Cached`], this process' read cache in front of any
//!   backend — what the module holds;
//! - [`sqlite`]: the embedded backend, one SQLite file in WAL mode;
//! - [`generation`]: the SQLite backend's change counter, shared between
//!   the processes of the host through a mapped file.
//!
//! - [`redis`]: the store shared by several proxies (SPEC §6);
//! - [`fault`]: what a process does while its store fails.
//!
//! [`Store`]: crate::store::Store
//! [`Entry`]: crate::store::Entry
//! [`Entry::validate`]: crate::store::Entry::validate
//! [`StoreError`]: crate::store::StoreError
//! [`open`]: crate::store::open()
//! [`cache`]: crate::store::cache
//! [`Cached`]: crate::store::Cached
//! [`sqlite`]: crate::store::sqlite
//! [`generation`]: crate::store::generation

pub mod access;
pub mod cache;
pub mod fault;
pub mod generation;
pub mod redis;
pub mod sqlite;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::forwarding::{self, ForwardTarget, Forwarding, ForwardingKind, Learned};

/// Longest target URI (or `learned_from`), in bytes: the URI parser's cap.
pub use crate::uri::MAX_URI_LEN;
pub use cache::{Cached, SharedEntry};
use sqlite::SqliteStore;

/// The service key of a forwarding that applies to every service.
pub const ANY_SERVICE: &str = "*";
/// Most targets one entry may hold.
pub const MAX_TARGETS: usize = 64;
/// Longest AOR or service key, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// Opens the store that `location` (the `store` parameter) names, behind a
/// read cache of this process:
///
/// - a file path: the embedded store ([`SqliteStore::open`]: the parent
///   folder is created if missing, the schema migrated);
/// - a `redis://` or `redis+sentinel://` URL (SPEC §6):
///   [`redis::RedisStore`], which connects at its first use (Kamailio
///   starts with Redis down);
/// - any other URL: [`StoreError::Unsupported`].
///
/// Errors never show a password the URL holds. Open it in the process that
/// uses it (Kamailio: `child_init`; see [`sqlite`] on fork).
pub fn open(location: &str) -> Result<Cached, StoreError> {
    open_with(location, sqlite::BUSY_TIMEOUT)
}

/// [`open()`], with `timeout` as the longest any one operation on the store
/// may wait (`store_timeout`; SQLite: its busy timeout). The backend is
/// behind this process' fault handling ([`fault::Resilient`]), which opens
/// it again the same way when it must.
pub fn open_with(location: &str, timeout: Duration) -> Result<Cached, StoreError> {
    if let Some((scheme, _)) = location.split_once("://") {
        if scheme.eq_ignore_ascii_case("redis") || scheme.eq_ignore_ascii_case("redis+sentinel") {
            let url = location.to_string();
            let opener: fault::Opener = Box::new(move || {
                redis::RedisStore::open(&url, timeout).map(|s| Box::new(s) as Box<dyn Store>)
            });
            return Ok(Cached::with(fault::Resilient::open(opener, timeout)?));
        }
        return Err(StoreError::Unsupported {
            location: without_password(location),
            reason: "a URL of an unknown kind of store; give a file path or a redis:// URL",
        });
    }
    let path = PathBuf::from(location);
    let opener: fault::Opener = Box::new(move || {
        SqliteStore::open_with(&path, timeout).map(|s| Box::new(s) as Box<dyn Store>)
    });
    Ok(Cached::with(fault::Resilient::open(opener, timeout)?))
}

/// `url` with its user information (`user:password@`), if any, as `***@`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest.get(..end).and_then(|authority| authority.rfind('@')) {
        Some(at) => format!("{scheme}://***{}", rest.get(at..).unwrap_or_default()),
        None => url.to_string(),
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store cannot be opened, created or written at `path`.
    Open {
        /// The store file.
        path: PathBuf,
        /// What failed, with the system's or SQLite's message.
        reason: String,
    },
    /// The location names a kind of store this build cannot use.
    Unsupported {
        /// The location, without its password.
        location: String,
        /// Why, and what to give instead.
        reason: &'static str,
    },
    /// The file was written by a newer version of push_redirect; it is left
    /// untouched.
    NewerSchema {
        /// The store file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this code knows.
        supported: i64,
    },
    /// The store was opened in another process (before a fork); it must be
    /// opened again in this one.
    WrongProcess {
        /// The pid that opened it.
        opened_by: u32,
        /// The pid that used it.
        used_by: u32,
    },
    /// Another process held the lock past the busy timeout and the retries.
    Busy,
    /// An input is over its cap.
    TooBig {
        /// Which input: `aor`, `service`, `uri`, `learned_from`, `targets`.
        what: &'static str,
        /// Its size (bytes, or targets).
        size: usize,
        /// The cap.
        max: usize,
    },
    /// An input is malformed; the message says how.
    Invalid(&'static str),
    /// A stored row that cannot be read. Not returned by the methods: reads
    /// skip the row and log this error.
    Corrupt {
        /// Its AOR (lossy, may be empty).
        aor: String,
        /// Its service (lossy, may be empty).
        service: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The store cannot be used now (this process could not open it
    /// again); tried again later.
    Unavailable,
    /// The handle no longer reaches its store: the file was removed or
    /// replaced under it.
    Moved {
        /// The store file.
        path: PathBuf,
    },
    /// A Redis command or connection failed.
    Redis {
        /// The operation: `get`, `put`, `connect`, ...
        op: &'static str,
        /// The client's message (never the password).
        message: String,
    },
    /// Any other SQLite error.
    Sqlite {
        /// The operation: `get`, `put`, ...
        op: &'static str,
        /// SQLite's message.
        message: String,
    },
}

impl StoreError {
    /// A fixed, one-line description of the kind of error (for C callers
    /// and statistics); [`fmt::Display`] adds the details.
    pub fn message(&self) -> &'static str {
        match self {
            StoreError::Open { .. } => "cannot open the forwarding store",
            StoreError::Unsupported { .. } => "unsupported forwarding store",
            StoreError::NewerSchema { .. } => "forwarding store written by a newer version",
            StoreError::WrongProcess { .. } => "forwarding store used across fork",
            StoreError::Busy => "forwarding store busy",
            StoreError::TooBig { .. } => "input too big for the forwarding store",
            StoreError::Invalid(m) => m,
            StoreError::Corrupt { .. } => "corrupt entry in the forwarding store",
            StoreError::Sqlite { .. } => "forwarding store error",
            StoreError::Unavailable => "forwarding store unavailable",
            StoreError::Redis { .. } => "forwarding store (Redis) error",
            StoreError::Moved { .. } => "forwarding store file removed or replaced",
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.message();
        match self {
            StoreError::Open { path, reason } => write!(f, "{m} {}: {reason}", path.display()),
            StoreError::Unsupported { location, reason } => write!(f, "{m} {location}: {reason}"),
            StoreError::NewerSchema {
                path,
                found,
                supported,
            } => write!(
                f,
                "{m}: {} has schema version {found}, this push_redirect knows up to \
                 {supported}; upgrade push_redirect or use another file",
                path.display()
            ),
            StoreError::WrongProcess { opened_by, used_by } => write!(
                f,
                "{m}: opened by pid {opened_by}, used by pid {used_by}; open it in each process"
            ),
            StoreError::Busy | StoreError::Invalid(_) | StoreError::Unavailable => f.write_str(m),
            StoreError::Moved { path } => write!(f, "{m}: {}", path.display()),
            StoreError::TooBig { what, size, max } => {
                write!(f, "{m}: {what} is {size}, at most {max}")
            }
            StoreError::Corrupt {
                aor,
                service,
                reason,
            } => write!(f, "{m}: aor {aor:?} service {service:?}: {reason}"),
            StoreError::Sqlite { op, message } | StoreError::Redis { op, message } => {
                write!(f, "{m} ({op}): {message}")
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// One stored forwarding: the key (AOR, service), what the engine needs,
/// and where it was learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The AOR, as the module keys it (compared byte for byte).
    pub aor: String,
    /// The service key (`engine::service_key`), or [`ANY_SERVICE`].
    pub service: String,
    /// Permanent (301), temporary (302) or provisioned (RPC).
    pub kind: ForwardingKind,
    /// Targets, best first (1 to [`MAX_TARGETS`]).
    pub targets: Vec<ForwardTarget>,
    /// Unix time from which the entry is dead; `None`: never.
    pub expires_at: Option<i64>,
    /// Unix time it was stored.
    pub created_at: i64,
    /// The contact that answered the 301/302, for learned entries.
    pub learned_from: Option<String>,
    /// That answer's status code.
    pub learned_status: Option<u16>,
}

impl Entry {
    /// The forwarding, as the engine takes it.
    pub fn forwarding(&self) -> Forwarding {
        Forwarding {
            kind: self.kind,
            targets: self.targets.clone(),
            expires_at: self.expires_at,
        }
    }

    /// Whether the entry is in force at `now` (as [`Forwarding::is_live`]).
    pub fn is_live(&self, now: i64) -> bool {
        forwarding::is_live(self.expires_at, now)
    }

    /// The entry for a forwarding a decision learned, at `now`.
    pub fn learned(aor: &str, service: &str, learned: &Learned, now: i64) -> Entry {
        Entry {
            aor: aor.to_string(),
            service: service.to_string(),
            kind: learned.kind,
            targets: learned.targets.clone(),
            expires_at: learned.ttl.map(|t| now.saturating_add(i64::from(t))),
            created_at: now,
            learned_from: Some(learned.learned_from.clone()),
            learned_status: Some(learned.status),
        }
    }

    /// Checks the caps and the format before storing.
    pub fn validate(&self) -> Result<(), StoreError> {
        check_key("aor", &self.aor)?;
        check_key("service", &self.service)?;
        if self.targets.is_empty() {
            return Err(StoreError::Invalid(
                "a forwarding needs at least one target",
            ));
        }
        if self.targets.len() > MAX_TARGETS {
            return Err(StoreError::TooBig {
                what: "targets",
                size: self.targets.len(),
                max: MAX_TARGETS,
            });
        }
        for t in &self.targets {
            check_uri("uri", &t.uri)?;
            if t.q.is_some_and(|q| q > 1000) {
                return Err(StoreError::Invalid("target q above 1000"));
            }
            if let Some(i) = &t.instance {
                check_key("aor", &i.aor)?;
                if !crate::forwarding::instance_ok(i.instance.as_bytes())
                    || i.aor.bytes().any(|c| !c.is_ascii_graphic())
                {
                    return Err(StoreError::Invalid(
                        "target instance empty, too long or not printable",
                    ));
                }
            }
        }
        if let Some(from) = &self.learned_from {
            check_uri("learned_from", from)?;
        }
        if self
            .learned_status
            .is_some_and(|s| !(100..=699).contains(&s))
        {
            return Err(StoreError::Invalid(
                "learned_status is not a SIP status code",
            ));
        }
        Ok(())
    }
}

/// Where forwardings live: what every backend does. Keys are compared byte
/// for byte; `now` is Unix time in seconds, and an entry is live while
/// `now < expires_at`.
///
/// Every method checks its keys (`put`: [`Entry::validate`]) before it
/// touches the store, and refuses what breaks a cap with
/// [`StoreError::TooBig`] or [`StoreError::Invalid`]. A backend is used by
/// the threads of the process that opened it (hence `Send + Sync`).
pub trait Store: Send + Sync {
    /// The live entry for (`aor`, `service`), else the live one for
    /// (`aor`, the service's method: `MESSAGE` covers
    /// `MESSAGE:text/plain`), else the live one for (`aor`,
    /// [`ANY_SERVICE`]), else `None`. A backend reads its store every time;
    /// [`Cached`] is the read cache.
    fn get(&self, aor: &str, service: &str, now: i64) -> Result<Option<Entry>, StoreError>;

    /// Inserts `entry`, or replaces the one with the same (AOR, service).
    fn put(&self, entry: &Entry) -> Result<(), StoreError>;

    /// Removes the entry for (`aor`, `service`), or with `None` every entry
    /// of `aor` (expired or not); returns how many.
    fn remove(&self, aor: &str, service: Option<&str>) -> Result<usize, StoreError>;

    /// The live entries of `aor`, or of every AOR with `None`, ordered by
    /// AOR then service.
    fn list(&self, aor: Option<&str>, now: i64) -> Result<Vec<Entry>, StoreError>;

    /// Deletes the expired entries; returns how many.
    fn sweep(&self, now: i64) -> Result<usize, StoreError>;

    /// How many entries are live.
    fn count(&self, now: i64) -> Result<usize, StoreError>;

    /// The store's change counter: a number that moves after every write
    /// to the store that changed something, made through any handle by any
    /// process (the SQLite one: [`generation`]). [`Cached`] reads it
    /// *before* each read of the store, and keeps what it read only while
    /// the number stays the same.
    ///
    /// `Ok(None)`: this backend cannot tell, so nothing may be cached. An
    /// error: the store cannot be used here at all (e.g.
    /// [`StoreError::WrongProcess`]), so no cached answer may be handed out
    /// either.
    fn generation(&self) -> Result<Option<u64>, StoreError>;

    /// Whether this handle still reaches its store (SQLite: the file at
    /// its path is the one it opened). An error that is not an input
    /// error makes [`fault::Resilient`] open the store again. By default:
    /// yes.
    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// A word shared by every process using this store, 0 while no outage
    /// is logged ([`fault`]: the first process to fail logs, the others do
    /// not); `None`: none, each process logs its own.
    fn outage_mark(&self) -> Option<&AtomicU64> {
        None
    }

    /// What kind of store this is, for `push_redirect.stats`: `sqlite`,
    /// ...
    fn kind(&self) -> &'static str {
        "other"
    }

    /// Called once a handle is opened again after [`Store::check`] failed:
    /// whether this process is the first of the host to do so for this
    /// store (it logs that), by default yes.
    fn announce(&self) -> bool {
        true
    }
}

/// Checks an AOR or service key (`what`) against its cap and format.
fn check_key(what: &'static str, s: &str) -> Result<(), StoreError> {
    if s.is_empty() {
        return Err(StoreError::Invalid(if what == "aor" {
            "empty aor"
        } else {
            "empty service"
        }));
    }
    if s.len() > MAX_KEY_LEN {
        return Err(StoreError::TooBig {
            what,
            size: s.len(),
            max: MAX_KEY_LEN,
        });
    }
    if s.bytes().any(|b| b.is_ascii_control()) {
        return Err(StoreError::Invalid(
            "aor or service holds a control character",
        ));
    }
    Ok(())
}

/// Checks a target URI or `learned_from` (`what`) against its cap and format.
/// A stored target's q as both backends write it: `-` (none) or 0..1000
/// (thousandths).
fn decode_q(q: &str) -> Result<Option<u16>, &'static str> {
    match q {
        "-" => Ok(None),
        q => q
            .parse::<u16>()
            .ok()
            .filter(|q| *q <= 1000)
            .map(Some)
            .ok_or("target q is not 0..1000"),
    }
}

fn check_uri(what: &'static str, s: &str) -> Result<(), StoreError> {
    if s.is_empty() {
        return Err(StoreError::Invalid("empty target URI"));
    }
    if s.len() > MAX_URI_LEN {
        return Err(StoreError::TooBig {
            what,
            size: s.len(),
            max: MAX_URI_LEN,
        });
    }
    if s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(StoreError::Invalid(
            "URI holds whitespace or a control character",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_is_never_shown() {
        for (url, shown) in [
            ("redis://127.0.0.1/0", "redis://127.0.0.1/0"),
            (
                "redis://:pw@127.0.0.1:6379/0",
                "redis://***@127.0.0.1:6379/0",
            ),
            ("redis://user:pw@host", "redis://***@host"),
            ("redis://us@er:p@w@host?x=1", "redis://***@host?x=1"),
            // An '@' past the authority is no user information.
            ("redis://host/0?name=a@b", "redis://host/0?name=a@b"),
            (
                "redis+sentinel://:pw@h1:26379,h2:26379/master/0",
                "redis+sentinel://***@h1:26379,h2:26379/master/0",
            ),
            ("/var/lib/a@b.sqlite", "/var/lib/a@b.sqlite"),
        ] {
            assert_eq!(without_password(url), shown, "{url}");
        }
    }
}
