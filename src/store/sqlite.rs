//! The forwarding store (SPEC §2 flows F5–F7, §4 `store`): the forwardings
//! learned from 301/302 replies and the ones provisioned by the operator,
//! per (AOR, service), shared by every Kamailio process of the host and kept
//! across restarts and crashes.
//!
//! [`Store`] is the interface the module uses, so that a server-backed store
//! (several proxies, SPEC §4 "a URL of a shared store") can come later;
//! [`SqliteStore`] is the embedded one: one SQLite file in WAL mode.
//!
//! # Processes and fork
//!
//! Kamailio forks its workers after `mod_init`. An SQLite connection must
//! never be used — nor even closed — in a process other than the one that
//! opened it (SQLite's "how to corrupt a database file", §2.6: locks are
//! per process, and the library's lock bookkeeping would be copied into the
//! child). So:
//!
//! - each worker opens its own [`SqliteStore`] in `child_init`;
//! - `mod_init` may open one to check the path and migrate the schema, but
//!   must drop it before returning (before the fork), so that no process
//!   ever forks with a connection open;
//! - a [`SqliteStore`] remembers the pid that opened it; every method
//!   checks [`std::process::id`] first and returns
//!   [`StoreError::WrongProcess`] in any other process, without touching the
//!   connection; dropping it there leaks the connection instead of closing
//!   it (the parent's file and locks are left alone).
//!
//! # Concurrency
//!
//! Every statement is a single autocommit statement (no read-then-write
//! transaction that could deadlock). SQLite waits up to [`BUSY_TIMEOUT`] for
//! another process's lock, and a statement that still gets `SQLITE_BUSY` or
//! `SQLITE_LOCKED` (cases where SQLite does not wait, such as WAL recovery)
//! is retried a few times with a short back-off, within the same
//! [`BUSY_TIMEOUT`]; only then (after at most about twice [`BUSY_TIMEOUT`])
//! does the caller see [`StoreError::Busy`].
//!
//! # Schema
//!
//! `PRAGMA user_version` is the schema version. [`MIGRATIONS`]`[n]` takes a
//! file from version `n` to `n + 1`, run in one `BEGIN IMMEDIATE`
//! transaction at [`SqliteStore::open`]; a file from a newer version is
//! refused ([`StoreError::NewerSchema`]) and left untouched. Version 1:
//!
//! ```sql
//! CREATE TABLE forwarding (
//!     aor            TEXT NOT NULL,    -- as the module keys it
//!     service        TEXT NOT NULL,    -- e.g. MESSAGE:text/plain, or *
//!     kind           TEXT NOT NULL,    -- permanent | temporary | provisioned
//!     targets        TEXT NOT NULL,    -- one "q uri" line per target
//!     expires_at     INTEGER,          -- Unix seconds; NULL: never
//!     created_at     INTEGER NOT NULL, -- Unix seconds
//!     learned_from   TEXT,             -- the contact that answered 301/302
//!     learned_status INTEGER,          -- its status code
//!     PRIMARY KEY (aor, service)
//! ) WITHOUT ROWID;
//! CREATE INDEX forwarding_expires ON forwarding (expires_at)
//!     WHERE expires_at IS NOT NULL;
//! ```
//!
//! `targets` holds one line per target, best first: `q` in thousandths or
//! `-` when the Contact gave none, a space, the URI (which holds no
//! whitespace). Every row is validated when read: a row that does not
//! decode, or breaks a cap, is skipped with an error in the log (naming the
//! AOR and service) and counted in [`SqliteStore::skipped_rows`]; it never
//! fails the whole query, and never panics.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, Row};

use crate::forwarding::{self, ForwardTarget, Forwarding, ForwardingKind, Learned};
use super::generation::Generation;
use crate::log::{self, pr_log_level};
pub use crate::uri::MAX_URI_LEN;

/// The service key of a forwarding that applies to every service.
pub const ANY_SERVICE: &str = "*";
/// Most targets one entry may hold.
pub const MAX_TARGETS: usize = 64;
/// Longest AOR or service key, in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// Longest target URI (or `learned_from`), in bytes.
/// How long SQLite waits for another process's lock before `SQLITE_BUSY`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// The schema version this code writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Schema migrations: element `n` takes a file from version `n` to `n + 1`.
/// To change the schema, append a step; never edit a released one.
pub const MIGRATIONS: &[&str] = &[
    // v0 -> v1: the forwarding table.
    "CREATE TABLE forwarding (
        aor            TEXT NOT NULL,
        service        TEXT NOT NULL,
        kind           TEXT NOT NULL,
        targets        TEXT NOT NULL,
        expires_at     INTEGER,
        created_at     INTEGER NOT NULL,
        learned_from   TEXT,
        learned_status INTEGER,
        PRIMARY KEY (aor, service)
    ) WITHOUT ROWID;
    CREATE INDEX forwarding_expires ON forwarding (expires_at)
        WHERE expires_at IS NOT NULL;",
];

/// Attempts of one statement on `SQLITE_BUSY`/`SQLITE_LOCKED` (after
/// SQLite's own busy wait), with a back-off of 2, 4, 8, 16 ms between them,
/// while less than [`BUSY_TIMEOUT`] has passed.
const MAX_ATTEMPTS: u32 = 5;

/// The columns, in the order `decode` reads them.
macro_rules! columns {
    () => {
        "aor, service, kind, targets, expires_at, created_at, learned_from, learned_status"
    };
}

// Three primary-key probes (an `IN` list would build a temporary b-tree on
// every call). The entry for (aor, service), else for (aor, method) — a service
// `MESSAGE` covers `MESSAGE:text/plain` —, else for (aor, "*"); the last
// column ranks them (0 best).
const SQL_GET: &str = concat!(
    "SELECT ",
    columns!(),
    ", 0 FROM forwarding WHERE aor = ?1 AND service = ?2 \
     AND (expires_at IS NULL OR expires_at > ?3) \
     UNION ALL SELECT ",
    columns!(),
    ", 1 FROM forwarding WHERE aor = ?1 AND service = ?4 AND ?4 <> ?2 \
     AND (expires_at IS NULL OR expires_at > ?3) \
     UNION ALL SELECT ",
    columns!(),
    ", 2 FROM forwarding WHERE aor = ?1 AND service = '*' AND ?2 <> '*' \
     AND (expires_at IS NULL OR expires_at > ?3)"
);
const SQL_PUT: &str = concat!(
    "INSERT OR REPLACE INTO forwarding (",
    columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
);
const SQL_REMOVE_ONE: &str = "DELETE FROM forwarding WHERE aor = ?1 AND service = ?2";
const SQL_REMOVE_ALL: &str = "DELETE FROM forwarding WHERE aor = ?1";
const SQL_LIST_AOR: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM forwarding WHERE aor = ?1 AND (expires_at IS NULL OR expires_at > ?2) \
     ORDER BY aor, service"
);
const SQL_LIST_ALL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM forwarding WHERE expires_at IS NULL OR expires_at > ?1 ORDER BY aor, service"
);
const SQL_SWEEP: &str = "DELETE FROM forwarding WHERE expires_at IS NOT NULL AND expires_at <= ?1";
const SQL_COUNT: &str =
    "SELECT count(*) FROM forwarding WHERE expires_at IS NULL OR expires_at > ?1";

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
            StoreError::NewerSchema { .. } => "forwarding store written by a newer version",
            StoreError::WrongProcess { .. } => "forwarding store used across fork",
            StoreError::Busy => "forwarding store busy",
            StoreError::TooBig { .. } => "input too big for the forwarding store",
            StoreError::Invalid(m) => m,
            StoreError::Corrupt { .. } => "corrupt entry in the forwarding store",
            StoreError::Sqlite { .. } => "forwarding store error",
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.message();
        match self {
            StoreError::Open { path, reason } => write!(f, "{m} {}: {reason}", path.display()),
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
            StoreError::Busy | StoreError::Invalid(_) => f.write_str(m),
            StoreError::TooBig { what, size, max } => {
                write!(f, "{m}: {what} is {size}, at most {max}")
            }
            StoreError::Corrupt {
                aor,
                service,
                reason,
            } => write!(f, "{m}: aor {aor:?} service {service:?}: {reason}"),
            StoreError::Sqlite { op, message } => write!(f, "{m} ({op}): {message}"),
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

/// Where forwardings live. Keys are compared byte for byte; `now` is Unix
/// time in seconds, and an entry is live while `now < expires_at`.
pub trait Store {
    /// The live entry for (`aor`, `service`), else the live one for
    /// (`aor`, [`ANY_SERVICE`]), else `None`.
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
}

/// The embedded store: one SQLite file (WAL mode) shared by every process
/// of the host.
///
/// Open it in the process that uses it (Kamailio: `child_init`); in any
/// other process every method returns [`StoreError::WrongProcess`] (see the
/// [module documentation](self)). It may be shared between threads of its
/// process (calls are serialised).
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    pid: u32,
    /// `None` only while being dropped.
    conn: Mutex<Option<Connection>>,
    skipped: AtomicU64,
    /// The change counter shared with every other user of the file; `None`:
    /// no read cache (the counter file could not be mapped).
    generation: Option<Generation>,
    /// What `get` read, valid while the counter has not moved.
    cache: Mutex<ReadCache>,
}

/// How long a cached answer may be used even when the change counter has
/// not moved, in seconds: the bound on how late a write the counter missed
/// (a writer that died between commit and count, the `sqlite3` shell) is
/// seen.
pub const CACHE_MAX_AGE: i64 = 10;
/// Most (AOR, service) answers one process caches; the cache starts again
/// empty when it is full.
pub const CACHE_MAX_KEYS: usize = 4096;

/// A stored entry and its forwarding, as [`SqliteStore::get_shared`] hands
/// them out (shared with the read cache).
#[derive(Debug, Clone)]
pub struct SharedEntry {
    /// The entry.
    pub entry: Arc<Entry>,
    /// Its forwarding, as the engine takes it.
    pub forwarding: Arc<Forwarding>,
}

impl SharedEntry {
    fn new(entry: Entry) -> SharedEntry {
        SharedEntry {
            forwarding: Arc::new(entry.forwarding()),
            entry: Arc::new(entry),
        }
    }
}

/// The answers `get` read from SQLite at one value of the change counter.
#[derive(Debug, Default)]
struct ReadCache {
    generation: u64,
    /// When the first answer of this generation was read (Unix seconds).
    since: i64,
    /// AOR -> (service, the answer: the entry, or none). Keyed by the AOR
    /// alone, so that a lookup builds no key; an AOR has few services.
    answers: HashMap<String, Vec<(String, Option<SharedEntry>)>>,
    /// How many answers `answers` holds.
    count: usize,
}

/// Most services cached for one AOR (the list is searched in order).
const CACHE_MAX_SERVICES: usize = 16;

impl ReadCache {
    /// The cached answer for (aor, service) at `generation` and `now`.
    /// An entry that has expired since is no answer (it is read again: a
    /// less specific entry may apply now).
    fn get(
        &mut self,
        generation: u64,
        now: i64,
        aor: &str,
        service: &str,
    ) -> Option<Option<SharedEntry>> {
        if generation != self.generation
            || now.saturating_sub(self.since) >= CACHE_MAX_AGE
            || now < self.since
        {
            self.answers.clear();
            self.count = 0;
            self.generation = generation;
            self.since = now;
            return None;
        }
        let (_, answer) = self.answers.get(aor)?.iter().find(|(s, _)| s == service)?;
        match answer {
            Some(e) if !e.entry.is_live(now) => None,
            answer => Some(answer.clone()),
        }
    }

    /// Keeps an answer read at `generation` (ignored if the counter moved
    /// while it was read: the next `get` starts a new generation).
    fn put(&mut self, generation: u64, aor: &str, service: &str, answer: &Option<SharedEntry>) {
        if generation != self.generation {
            return;
        }
        if self.count >= CACHE_MAX_KEYS {
            self.answers.clear();
            self.count = 0;
        }
        let services = self.answers.entry(aor.to_string()).or_default();
        if let Some(slot) = services.iter_mut().find(|(s, _)| s == service) {
            slot.1 = answer.clone();
            return;
        }
        if services.len() >= CACHE_MAX_SERVICES {
            self.count = self.count.saturating_sub(services.len());
            services.clear();
        }
        services.push((service.to_string(), answer.clone()));
        self.count += 1;
    }
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`: creates the parent folder if
    /// missing, switches the file to WAL mode and migrates its schema.
    ///
    /// Errors: [`StoreError::Open`] when the folder or file cannot be
    /// created, opened or written, or the file is not an SQLite database;
    /// [`StoreError::NewerSchema`] for a file of a newer version.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref();
        let fail = |reason: String| StoreError::Open {
            path: path.to_path_buf(),
            reason,
        };
        let text = path.to_string_lossy();
        if text.is_empty() {
            return Err(fail("empty path".into()));
        }
        if text.contains("://") {
            return Err(fail(
                "this is a URL; the embedded store takes a file path".into(),
            ));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    fail(format!("cannot create the folder {}: {e}", dir.display()))
                })?;
            }
        }
        if path.is_dir() {
            return Err(fail("is a folder, not a file".into()));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)
            .map_err(|e| fail(format!("cannot open: {e}")))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| fail(format!("cannot set busy_timeout: {e}")))?;
        if conn.is_readonly("main").unwrap_or(true) {
            return Err(fail("the file is not writable".into()));
        }
        // Refuse a newer file before changing anything in it.
        let version = retry(|| user_version(&conn))
            .map_err(|e| fail(format!("cannot read the schema version: {e}")))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        let mode = retry(|| {
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
        })
        .map_err(|e| fail(format!("cannot switch to WAL: {e}")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(fail(format!(
                "cannot switch to WAL (journal_mode stays {mode}; is the folder on a local file system?)"
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| fail(format!("cannot set synchronous: {e}")))?;
        match retry(|| migrate(&mut conn)) {
            Ok(Ok(())) => {}
            Ok(Err(found)) => {
                return Err(StoreError::NewerSchema {
                    path: path.to_path_buf(),
                    found,
                    supported: SCHEMA_VERSION,
                })
            }
            Err(e) => return Err(fail(format!("cannot migrate the schema: {e}"))),
        }
        let generation = match Generation::open(path) {
            Ok(g) => {
                // The schema may just have been created or migrated.
                g.bump();
                Some(g)
            }
            Err(e) => {
                log::emit(
                    pr_log_level::Warn,
                    &format!(
                        "forwarding store without read cache (every lookup reads SQLite): {e}"
                    ),
                );
                None
            }
        };
        Ok(SqliteStore {
            path: path.to_path_buf(),
            pid: process_id(),
            conn: Mutex::new(Some(conn)),
            skipped: AtomicU64::new(0),
            generation,
            cache: Mutex::new(ReadCache::default()),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid of the process that opened the store (the only one that may
    /// use it).
    pub fn opened_by(&self) -> u32 {
        self.pid
    }

    /// How many corrupt rows reads have skipped so far (each is also logged).
    pub fn skipped_rows(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Whether reads are cached (the change counter file is mapped).
    pub fn has_read_cache(&self) -> bool {
        self.generation.is_some()
    }

    /// Counts a committed write in the shared change counter.
    fn wrote(&self) {
        if let Some(g) = &self.generation {
            g.bump();
        }
    }

    fn check_process(&self) -> Result<(), StoreError> {
        let now = process_id();
        if now == self.pid {
            Ok(())
        } else {
            Err(StoreError::WrongProcess {
                opened_by: self.pid,
                used_by: now,
            })
        }
    }

    /// Runs `f` on the connection, in this process only, retrying on busy.
    fn with_conn<T>(
        &self,
        op: &'static str,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.check_process()?;
        let guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = guard
            .as_ref()
            .ok_or(StoreError::Invalid("the forwarding store is closed"))?;
        retry(|| f(conn)).map_err(|e| {
            if is_busy(&e) {
                StoreError::Busy
            } else {
                StoreError::Sqlite {
                    op,
                    message: e.to_string(),
                }
            }
        })
    }

    /// [`Store::get`], shared with the read cache: a cached answer is
    /// handed out without a copy.
    pub fn get_shared(
        &self,
        aor: &str,
        service: &str,
        now: i64,
    ) -> Result<Option<SharedEntry>, StoreError> {
        self.check_process()?;
        // Read the counter before SQLite (see `generation`).
        let generation = self.generation.as_ref().map(Generation::current);
        if let Some(g) = generation {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            // Only keys that passed `check_key` below are ever cached.
            if let Some(answer) = cache.get(g, now, aor, service) {
                return Ok(answer);
            }
        }
        check_key("aor", aor)?;
        check_key("service", service)?;
        let answer = self.get_uncached(aor, service, now)?.map(SharedEntry::new);
        if let Some(g) = generation {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            cache.put(g, aor, service, &answer);
        }
        Ok(answer)
    }

    /// [`Store::get`] without the read cache: always one read of SQLite
    /// (what a first lookup, or one after a write, costs).
    pub fn get_from_file(
        &self,
        aor: &str,
        service: &str,
        now: i64,
    ) -> Result<Option<Entry>, StoreError> {
        check_key("aor", aor)?;
        check_key("service", service)?;
        self.get_uncached(aor, service, now)
    }

    fn get_uncached(
        &self,
        aor: &str,
        service: &str,
        now: i64,
    ) -> Result<Option<Entry>, StoreError> {
        let method = service.split(':').next().unwrap_or(service);
        self.with_conn("get", |conn| {
            let mut stmt = conn.prepare_cached(SQL_GET)?;
            let mut rows = stmt.query(params![aor, service, now, method])?;
            // At most three rows: (aor, service), (aor, method), (aor, "*").
            let mut best: Option<(i64, Entry)> = None;
            while let Some(row) = rows.next()? {
                let rank = row.get::<_, i64>(8).unwrap_or(i64::MAX);
                if best.as_ref().is_some_and(|(r, _)| *r <= rank) {
                    continue;
                }
                if let Some(e) = self.decode_or_skip(row) {
                    best = Some((rank, e));
                }
            }
            Ok(best.map(|(_, e)| e))
        })
    }

    /// Decodes a row, or logs and counts it as skipped.
    fn decode_or_skip(&self, row: &Row<'_>) -> Option<Entry> {
        match decode(row) {
            Ok(e) => Some(e),
            Err(reason) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                let err = StoreError::Corrupt {
                    aor: lossy_column(row, 0),
                    service: lossy_column(row, 1),
                    reason,
                };
                log::emit(
                    pr_log_level::Error,
                    &format!("{err} (in {}; entry skipped)", self.path.display()),
                );
                None
            }
        }
    }
}

impl Store for SqliteStore {
    fn get(&self, aor: &str, service: &str, now: i64) -> Result<Option<Entry>, StoreError> {
        Ok(self
            .get_shared(aor, service, now)?
            .map(|s| Entry::clone(&s.entry)))
    }

    fn put(&self, entry: &Entry) -> Result<(), StoreError> {
        entry.validate()?;
        let targets = encode_targets(&entry.targets);
        self.with_conn("put", |conn| {
            conn.prepare_cached(SQL_PUT)?
                .execute(params![
                    entry.aor,
                    entry.service,
                    entry.kind.name(),
                    targets,
                    entry.expires_at,
                    entry.created_at,
                    entry.learned_from,
                    entry.learned_status,
                ])
                .map(drop)
        })?;
        self.wrote();
        Ok(())
    }
    fn remove(&self, aor: &str, service: Option<&str>) -> Result<usize, StoreError> {
        check_key("aor", aor)?;
        if let Some(s) = service {
            check_key("service", s)?;
        }
        let n = self.with_conn("remove", |conn| match service {
            Some(s) => conn
                .prepare_cached(SQL_REMOVE_ONE)?
                .execute(params![aor, s]),
            None => conn.prepare_cached(SQL_REMOVE_ALL)?.execute(params![aor]),
        })?;
        if n > 0 {
            self.wrote();
        }
        Ok(n)
    }

    fn list(&self, aor: Option<&str>, now: i64) -> Result<Vec<Entry>, StoreError> {
        if let Some(a) = aor {
            check_key("aor", a)?;
        }
        self.with_conn("list", |conn| {
            let mut out = Vec::new();
            let mut stmt;
            let mut rows = match aor {
                Some(a) => {
                    stmt = conn.prepare_cached(SQL_LIST_AOR)?;
                    stmt.query(params![a, now])?
                }
                None => {
                    stmt = conn.prepare_cached(SQL_LIST_ALL)?;
                    stmt.query(params![now])?
                }
            };
            while let Some(row) = rows.next()? {
                out.extend(self.decode_or_skip(row));
            }
            Ok(out)
        })
    }

    fn sweep(&self, now: i64) -> Result<usize, StoreError> {
        let n = self.with_conn("sweep", |conn| {
            conn.prepare_cached(SQL_SWEEP)?.execute(params![now])
        })?;
        if n > 0 {
            self.wrote();
        }
        Ok(n)
    }

    fn count(&self, now: i64) -> Result<usize, StoreError> {
        let n = self.with_conn("count", |conn| {
            conn.prepare_cached(SQL_COUNT)?
                .query_row(params![now], |r| r.get::<_, i64>(0))
        })?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        let slot = self.conn.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(conn) = slot.take() {
            if process_id() == self.pid {
                drop(conn);
            } else {
                // Opened before a fork: closing it here could checkpoint or
                // unlock the parent's file. Leak it instead.
                std::mem::forget(conn);
            }
        }
    }
}

/// Runs `f`, again after a short back-off while it reports busy/locked,
/// at most [`MAX_ATTEMPTS`] times and not after [`BUSY_TIMEOUT`] has passed
/// (each attempt may itself wait up to [`BUSY_TIMEOUT`] in SQLite's busy
/// handler, so a call gives up after at most twice that).
fn retry<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let start = Instant::now();
    let mut attempt = 1;
    loop {
        match f() {
            Err(e) if attempt < MAX_ATTEMPTS && is_busy(&e) && start.elapsed() < BUSY_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(1 << attempt));
                attempt += 1;
            }
            r => return r,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Brings the schema to [`SCHEMA_VERSION`] in one immediate transaction;
/// `Ok(Err(found))` for a newer file (a process of a newer version may have
/// migrated it in between).
fn migrate(conn: &mut Connection) -> rusqlite::Result<Result<(), i64>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found = user_version(&tx)?;
    if found == SCHEMA_VERSION {
        return Ok(Ok(()));
    }
    let Ok(from) = usize::try_from(found) else {
        // A negative user_version was not written by us.
        return Ok(Err(found));
    };
    if found > SCHEMA_VERSION {
        return Ok(Err(found));
    }
    for step in MIGRATIONS.iter().skip(from) {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(Ok(()))
}

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

fn encode_targets(targets: &[ForwardTarget]) -> String {
    let mut out = String::with_capacity(targets.iter().map(|t| t.uri.len() + 6).sum());
    for (i, t) in targets.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match t.q {
            Some(q) => out.push_str(&q.to_string()),
            None => out.push('-'),
        }
        out.push(' ');
        out.push_str(&t.uri);
    }
    out
}

fn decode_targets(text: &str) -> Result<Vec<ForwardTarget>, &'static str> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        if out.len() == MAX_TARGETS {
            return Err("more targets than the cap");
        }
        let (q, uri) = line.split_once(' ').ok_or("target line without a space")?;
        let q = match q {
            "-" => None,
            q => Some(
                q.parse::<u16>()
                    .ok()
                    .filter(|q| *q <= 1000)
                    .ok_or("target q is not 0..1000")?,
            ),
        };
        check_uri("uri", uri).map_err(|_| "target URI empty, too long or with whitespace")?;
        out.push(ForwardTarget {
            uri: uri.to_string(),
            q,
        });
    }
    Ok(out)
}

fn text(row: &Row<'_>, i: usize, what: &'static str) -> Result<String, &'static str> {
    match row.get_ref(i) {
        Ok(ValueRef::Text(b)) => std::str::from_utf8(b).map(str::to_string).map_err(|_| what),
        _ => Err(what),
    }
}

fn opt_text(row: &Row<'_>, i: usize, what: &'static str) -> Result<Option<String>, &'static str> {
    match row.get_ref(i) {
        Ok(ValueRef::Null) => Ok(None),
        _ => text(row, i, what).map(Some),
    }
}

fn opt_int(row: &Row<'_>, i: usize, what: &'static str) -> Result<Option<i64>, &'static str> {
    match row.get_ref(i) {
        Ok(ValueRef::Null) => Ok(None),
        Ok(ValueRef::Integer(n)) => Ok(Some(n)),
        _ => Err(what),
    }
}

/// Reads and validates one row of `columns!()`.
fn decode(row: &Row<'_>) -> Result<Entry, &'static str> {
    let aor = text(row, 0, "aor is not text")?;
    let service = text(row, 1, "service is not text")?;
    let kind =
        ForwardingKind::from_name(&text(row, 2, "kind is not text")?).ok_or("unknown kind")?;
    let targets = decode_targets(&text(row, 3, "targets is not text")?)?;
    let expires_at = opt_int(row, 4, "expires_at is not an integer")?;
    let created_at =
        opt_int(row, 5, "created_at is not an integer")?.ok_or("created_at is missing")?;
    let learned_from = opt_text(row, 6, "learned_from is not text")?;
    let learned_status = match opt_int(row, 7, "learned_status is not an integer")? {
        None => None,
        Some(s) => Some(u16::try_from(s).map_err(|_| "learned_status out of range")?),
    };
    let e = Entry {
        aor,
        service,
        kind,
        targets,
        expires_at,
        created_at,
        learned_from,
        learned_status,
    };
    e.validate().map_err(|err| err.message())?;
    Ok(e)
}

/// A column as text for an error message, whatever it holds.
fn lossy_column(row: &Row<'_>, i: usize) -> String {
    match row.get_ref(i) {
        Ok(ValueRef::Text(b)) => {
            String::from_utf8_lossy(b.get(..MAX_KEY_LEN).unwrap_or(b)).into_owned()
        }
        _ => String::new(),
    }
}

/// This process' id, without a system call per use: read once, and again
/// in the child after each `fork()` (a `pthread_atfork` handler registered
/// when the first store is opened; before that, every call asks the
/// system).
fn process_id() -> u32 {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: registers a handler that only stores getpid() in an
        // atomic: async-signal-safe, as a child handler must be.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(refresh_pid)) };
        if rc == 0 {
            refresh_pid();
        }
    });
    match PID.load(Ordering::Relaxed) {
        0 => std::process::id(),
        pid => pid,
    }
}

/// The pid `process_id` answers with; 0 until known.
static PID: AtomicU32 = AtomicU32::new(0);

extern "C" fn refresh_pid() {
    PID.store(std::process::id(), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip() {
        let t = vec![
            ForwardTarget {
                uri: "sip:a@example.com".into(),
                q: Some(1000),
            },
            ForwardTarget {
                uri: "sip:b@example.com;transport=tcp".into(),
                q: None,
            },
        ];
        assert_eq!(decode_targets(&encode_targets(&t)).unwrap(), t);
    }

    #[test]
    fn bad_targets_are_errors() {
        for bad in [
            "",
            "sip:a@b",
            "x sip:a@b",
            "1001 sip:a@b",
            "- ",
            "1 sip:a@b\n",
        ] {
            assert!(decode_targets(bad).is_err(), "{bad:?}");
        }
        let many = vec!["- sip:a@b"; MAX_TARGETS + 1].join("\n");
        assert!(decode_targets(&many).is_err());
    }

    fn cached(aor: &str, service: &str, expires_at: Option<i64>) -> Option<SharedEntry> {
        Some(SharedEntry::new(Entry {
            aor: aor.into(),
            service: service.into(),
            kind: ForwardingKind::Permanent,
            targets: vec![ForwardTarget {
                uri: "sip:t2@127.0.0.1:5072".into(),
                q: None,
            }],
            expires_at,
            created_at: 1,
            learned_from: None,
            learned_status: None,
        }))
    }

    #[test]
    fn read_cache_answers_per_aor_and_service_within_its_bounds() {
        let mut c = ReadCache::default();
        let (g, now) = (7, 1_000);
        // A new generation starts empty.
        assert!(c.get(g, now, "sip:a@x", "M").is_none());
        c.put(g, "sip:a@x", "M", &cached("sip:a@x", "M", None));
        c.put(g, "sip:a@x", "N", &None);
        c.put(g - 1, "sip:b@x", "M", &None); // read at an older counter: not kept
        assert!(c.get(g, now, "sip:a@x", "M").is_some_and(|a| a.is_some()));
        assert!(c.get(g, now, "sip:a@x", "N").is_some_and(|a| a.is_none()));
        assert!(c.get(g, now, "sip:a@x", "O").is_none());
        assert!(c.get(g, now, "sip:b@x", "M").is_none());
        assert_eq!(c.count, 2);
        // The same key again replaces its answer.
        c.put(g, "sip:a@x", "N", &cached("sip:a@x", "N", Some(now + 5)));
        assert_eq!(c.count, 2);
        assert!(c.get(g, now, "sip:a@x", "N").is_some_and(|a| a.is_some()));
        // An entry that expired since is no answer; the age bound and a new
        // counter empty the cache.
        assert!(c.get(g, now + 5, "sip:a@x", "N").is_none());
        assert!(c.get(g, now + CACHE_MAX_AGE, "sip:a@x", "M").is_none());
        assert_eq!(c.count, 0);
        c.put(g, "sip:a@x", "M", &None);
        assert!(c.get(g + 1, now + CACHE_MAX_AGE, "sip:a@x", "M").is_none());
        // One AOR keeps at most CACHE_MAX_SERVICES services.
        let g = g + 1;
        for k in 0..CACHE_MAX_SERVICES + 3 {
            c.put(g, "sip:a@x", &format!("S{k}"), &None);
        }
        assert!(c
            .answers
            .get("sip:a@x")
            .is_some_and(|v| v.len() <= CACHE_MAX_SERVICES));
        assert_eq!(c.count, c.answers.values().map(Vec::len).sum::<usize>());
        // At most CACHE_MAX_KEYS answers in all.
        for k in 0..CACHE_MAX_KEYS + 10 {
            c.put(g, &format!("sip:u{k}@x"), "M", &None);
        }
        assert!(c.count <= CACHE_MAX_KEYS);
        assert_eq!(c.count, c.answers.values().map(Vec::len).sum::<usize>());
    }

    #[test]
    fn schema_version_is_number_of_steps() {
        assert_eq!(SCHEMA_VERSION, 1);
    }
}
