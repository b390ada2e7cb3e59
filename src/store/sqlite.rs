//! The embedded forwarding store: [`SqliteStore`], one SQLite file in WAL
//! mode shared by every process of the host; a [`Store`] backend. Its
//! change counter is [`super::generation`]; the read cache in front of it
//! is [`super::cache`].
//!
//! # Processes and fork
//!
//! Kamailio forks its workers after `mod_init`. An SQLite connection must
//! never be used — nor even closed — in a process other than the one that
//! opened it (SQLite's "how to corrupt a database file", §2.6: locks are
//! per process, and the library's lock bookkeeping would be copied into the
//! child). So:
//!
//! - each worker opens its own store ([`super::open`]) in `child_init`;
//! - `mod_init` may open one to check the path and migrate the schema, but
//!   must drop it before returning (before the fork), so that no process
//!   ever forks with a connection open;
//! - a [`SqliteStore`] remembers the pid that opened it; every method
//!   checks [`std::process::id`] first and returns
//!   [`StoreError::WrongProcess`] in any other process, without touching the
//!   connection — [`Store::generation`] too, so the read cache in front of
//!   it hands out nothing there either; dropping it there leaks the
//!   connection instead of closing it (the parent's file and locks are left
//!   alone).
//!
//! # Concurrency
//!
//! Every statement is a single autocommit statement (no read-then-write
//! transaction that could deadlock). SQLite waits for another process's
//! lock up to the store's timeout (`store_timeout` through
//! [`SqliteStore::open_with`]; [`BUSY_TIMEOUT`] through
//! [`SqliteStore::open`]), and a statement that still gets `SQLITE_BUSY` or
//! `SQLITE_LOCKED` (cases where SQLite does not wait, such as WAL recovery)
//! is retried a few times with a short back-off, each try waiting only
//! what is left of the same timeout; then the caller sees
//! [`StoreError::Busy`]. No call waits much longer than the timeout.
//!
//! # Faults
//!
//! [`SqliteStore::check`] tells whether the file at the store's path is
//! still the one it opened (not removed or replaced), for the fault
//! handling ([`super::fault`]) to open it again; the `<store>-gen` file
//! also holds the host's "an outage is logged" mark
//! ([`Store::outage_mark`]).
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
//! Version 2 adds the terminals that targets name by their instance:
//!
//! ```sql
//! ALTER TABLE forwarding ADD COLUMN instances TEXT; -- NULL: none
//! ```
//!
//! `targets` holds one line per target, best first: `q` in thousandths or
//! `-` when the Contact gave none, a space, the URI (which holds no
//! whitespace). `instances`, when not NULL, holds one line per target, in
//! the same order: `-`, or the AOR the terminal is registered under, a
//! space, its `+sip.instance` (neither holds whitespace). A version 1 file
//! is migrated in place; its rows have no instances (their targets are
//! URIs, as before). Every row is validated when read: a row that does not
//! decode, or breaks a cap, is skipped with an error in the log (naming the
//! AOR and service) and counted in [`SqliteStore::skipped_rows`]; it never
//! fails the whole query, and never panics.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, Row};

use super::generation::Generation;
use super::{check_key, check_uri, decode_q, Entry, Store, StoreError, MAX_KEY_LEN, MAX_TARGETS};
use crate::forwarding::{instance_ok, ForwardTarget, ForwardingKind, TargetInstance};
use crate::log::{self, pr_log_level};

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
    // v1 -> v2: the instances of targets that are registered terminals.
    "ALTER TABLE forwarding ADD COLUMN instances TEXT;",
];

/// Attempts of one statement on `SQLITE_BUSY`/`SQLITE_LOCKED` (after
/// SQLite's own busy wait), with a back-off of 2, 4, 8, 16 ms between them,
/// while less than [`BUSY_TIMEOUT`] has passed.
const MAX_ATTEMPTS: u32 = 5;

/// The columns, in the order `decode` reads them.
macro_rules! columns {
    () => {
        "aor, service, kind, targets, expires_at, created_at, learned_from, learned_status, \
         instances"
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
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
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

/// The embedded store: one SQLite file (WAL mode) shared by every process
/// of the host. Every read goes to the file; [`super::open`] puts it behind
/// the read cache.
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
    /// none (the counter file could not be mapped), so no read cache.
    generation: Option<Generation>,
    /// The longest one call waits for another process's lock.
    timeout: Duration,
    /// The file it opened: (device, inode).
    file_id: (u64, u64),
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`: creates the parent folder if
    /// missing, switches the file to WAL mode and migrates its schema.
    ///
    /// Errors: [`StoreError::Open`] when the folder or file cannot be
    /// created, opened or written, or the file is not an SQLite database;
    /// [`StoreError::NewerSchema`] for a file of a newer version.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, BUSY_TIMEOUT)
    }

    /// [`SqliteStore::open`], waiting at most about `timeout` for another
    /// process's lock, in the opening and in every later call.
    pub fn open_with(path: impl AsRef<Path>, timeout: Duration) -> Result<SqliteStore, StoreError> {
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
        conn.busy_timeout(timeout)
            .map_err(|e| fail(format!("cannot set busy_timeout: {e}")))?;
        if conn.is_readonly("main").unwrap_or(true) {
            return Err(fail("the file is not writable".into()));
        }
        // Refuse a newer file before changing anything in it.
        let version = retry(timeout, |_| user_version(&conn))
            .map_err(|e| fail(format!("cannot read the schema version: {e}")))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        let mode = retry(timeout, |_| {
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
        match retry(timeout, |_| migrate(&mut conn)) {
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
        let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot stat: {e}")))?;
        Ok(SqliteStore {
            timeout,
            file_id: (meta.dev(), meta.ino()),
            path: path.to_path_buf(),
            pid: process_id(),
            conn: Mutex::new(Some(conn)),
            skipped: AtomicU64::new(0),
            generation,
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
        let full = self.timeout;
        let r = retry(full, |left| {
            if left < full {
                conn.busy_timeout(left)?;
            }
            f(conn)
        });
        if r.is_err() {
            // A retry may have shortened it.
            let _ = conn.busy_timeout(full);
        }
        r.map_err(|e| {
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
    /// One read of the file, every time (the read cache is
    /// [`super::Cached`]).
    fn get(&self, aor: &str, service: &str, now: i64) -> Result<Option<Entry>, StoreError> {
        check_key("aor", aor)?;
        check_key("service", service)?;
        let method = service.split(':').next().unwrap_or(service);
        self.with_conn("get", |conn| {
            let mut stmt = conn.prepare_cached(SQL_GET)?;
            let mut rows = stmt.query(params![aor, service, now, method])?;
            // At most three rows: (aor, service), (aor, method), (aor, "*").
            let mut best: Option<(i64, Entry)> = None;
            while let Some(row) = rows.next()? {
                let rank = row.get::<_, i64>(9).unwrap_or(i64::MAX);
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

    fn put(&self, entry: &Entry) -> Result<(), StoreError> {
        entry.validate()?;
        let targets = encode_targets(&entry.targets);
        let instances = encode_instances(&entry.targets);
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
                    instances,
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

    /// The shared counter of [`super::generation`], bumped after each
    /// committed write by any process; `None` without the counter file.
    /// [`StoreError::WrongProcess`] in a process other than the opener.
    fn generation(&self) -> Result<Option<u64>, StoreError> {
        self.check_process()?;
        Ok(self.generation.as_ref().map(Generation::current))
    }

    /// Whether the file at the store's path is the one this handle opened:
    /// [`StoreError::Moved`] when it was removed (with its folder or not)
    /// or replaced. SQLite itself goes on writing into a removed file,
    /// where no other process will ever read it.
    fn check(&self) -> Result<(), StoreError> {
        self.check_process()?;
        match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.file_id => Ok(()),
            Ok(_) => Err(StoreError::Moved {
                path: self.path.clone(),
            }),
            // Cannot tell (a folder that cannot be searched).
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
            // Gone, or a part of the path no longer a folder.
            Err(_) => Err(StoreError::Moved {
                path: self.path.clone(),
            }),
        }
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    /// The second word of the `<store>-gen` file.
    fn outage_mark(&self) -> Option<&AtomicU64> {
        self.generation.as_ref().map(Generation::outage_mark)
    }

    /// The third word of the `<store>-gen` file holds the inode of the
    /// last store file announced: the first process to open this file
    /// again announces it.
    fn announce(&self) -> bool {
        self.generation
            .as_ref()
            .is_none_or(|g| g.announced().swap(self.file_id.1, Ordering::AcqRel) != self.file_id.1)
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
/// at most [`MAX_ATTEMPTS`] times and while less than `timeout` has passed.
/// `f` gets what is left of `timeout` (all of it the first time), to
/// bound its own wait by: the whole call then takes about `timeout` at
/// most.
fn retry<T>(
    timeout: Duration,
    mut f: impl FnMut(Duration) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let start = Instant::now();
    let mut attempt = 1;
    let mut left = timeout;
    loop {
        match f(left) {
            Err(e) if attempt < MAX_ATTEMPTS && is_busy(&e) => {
                let pause = Duration::from_millis(1 << attempt);
                match timeout.checked_sub(start.elapsed() + pause) {
                    Some(l) if !l.is_zero() => left = l,
                    _ => return Err(e),
                }
                std::thread::sleep(pause);
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

/// The `instances` column of `targets`: NULL when none has one.
fn encode_instances(targets: &[ForwardTarget]) -> Option<String> {
    if targets.iter().all(|t| t.instance.is_none()) {
        return None;
    }
    let lines: Vec<String> = targets
        .iter()
        .map(|t| match &t.instance {
            Some(i) => format!("{} {}", i.aor, i.instance),
            None => "-".to_string(),
        })
        .collect();
    Some(lines.join("\n"))
}

/// Reads the `instances` column into `targets` (decoded before it).
fn decode_instances(text: &str, targets: &mut [ForwardTarget]) -> Result<(), &'static str> {
    let mut lines = text.split('\n');
    for t in targets.iter_mut() {
        let line = lines.next().ok_or("fewer instances than targets")?;
        if line == "-" {
            continue;
        }
        let (aor, instance) = line
            .split_once(' ')
            .ok_or("instance line without a space")?;
        check_key("aor", aor).map_err(|_| "instance AOR empty or too long")?;
        if !instance_ok(instance.as_bytes()) || aor.bytes().any(|c| !c.is_ascii_graphic()) {
            return Err("instance empty, too long or not printable");
        }
        t.instance = Some(TargetInstance {
            aor: aor.to_string(),
            instance: instance.to_string(),
        });
    }
    if lines.next().is_some() {
        return Err("more instances than targets");
    }
    Ok(())
}

fn decode_targets(text: &str) -> Result<Vec<ForwardTarget>, &'static str> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        if out.len() == MAX_TARGETS {
            return Err("more targets than the cap");
        }
        let (q, uri) = line.split_once(' ').ok_or("target line without a space")?;
        let q = decode_q(q)?;
        check_uri("uri", uri).map_err(|_| "target URI empty, too long or with whitespace")?;
        out.push(ForwardTarget {
            uri: uri.to_string(),
            q,
            instance: None,
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
    let mut targets = decode_targets(&text(row, 3, "targets is not text")?)?;
    if let Some(i) = opt_text(row, 8, "instances is not text")? {
        decode_instances(&i, &mut targets)?;
    }
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
                instance: None,
            },
            ForwardTarget {
                uri: "sip:b@example.com;transport=tcp".into(),
                q: None,
                instance: None,
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

    #[test]
    fn schema_version_is_number_of_steps() {
        assert_eq!(SCHEMA_VERSION, 2);
    }
}
