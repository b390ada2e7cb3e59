//! The store shared by several proxies (SPEC §6): [`RedisStore`], one Redis
//! (`store` = `redis://[[user]:password@]host[:port][/db][?prefix=P]`); a
//! [`Store`] backend behind the same fault handling ([`super::fault`]) and
//! read cache as SQLite.
//!
//! # Keys
//!
//! One string key per (AOR, service): `<prefix>:<aor>:<service>` (prefix
//! `push_redirect` unless the URL's `?prefix=` says otherwise, so that
//! deployments can share a Redis), written whole by one `SET` (atomic per
//! entry). A temporary forwarding's key carries Redis' own expiry
//! (`EXAT`): it goes by itself, no sweep. Per AOR, a set
//! `<prefix>#<aor>` lists its services (for `remove aor` and `list aor`);
//! a key and its set member change together (`MULTI`/`EXEC`). The value:
//!
//! ```text
//! pr1 | pr2               format version (pr2: a target may name a terminal)
//! <aor>
//! <service>
//! <kind>                  permanent | temporary | provisioned
//! <expires_at | ->        Unix seconds
//! <created_at>
//! <learned_from | ->
//! <learned_status | ->
//! <q | -> <uri> [<aor> <instance>]   one line per target, best first
//! ```
//!
//! A target that names a registered terminal (a learned forwarding that
//! follows its `+sip.instance`, SPEC §3) carries the AOR it is registered
//! under and its instance after the URI (none of the three holds
//! whitespace), as SQLite's `instances` column does; a value with such a
//! target is `pr2`, one without stays `pr1`, as SQLite stores NULL there,
//! so a node of the previous version still reads every value it can
//! understand and skips (logs) the others.
//!
//! Every value is validated when read: one that does not decode is skipped
//! (logged, counted in [`RedisStore::skipped_values`]).
//!
//! # Connection
//!
//! Each process opens its own connection, at its first use after the fork
//! (a handle used in another process than the one that made it answers
//! [`StoreError::WrongProcess`]). [`RedisStore::open`] only reads the URL:
//! Kamailio starts with Redis down. Connecting, and every command, waits at
//! most the store's timeout (`store_timeout`); a failed command drops the
//! connection, and connecting again waits a back-off (100 ms doubling to
//! 5 s) during which calls fail at once, so no request waits on a Redis
//! that is down.
//!
//! # Invalidation across nodes
//!
//! Every write also publishes the AOR on the channel `<prefix>:changes`
//! (in the same transaction). Each Kamailio node runs one subscriber
//! ([`run_subscriber`], in a process the module forks) that bumps the
//! node's change counter — a page shared by the node's processes
//! ([`host_page`], mapped before the fork) — at every message, so every
//! worker's read cache ([`super::Cached`]) drops what it kept as soon as
//! any node writes. While the subscription is not up (Redis down or
//! restarted, the subscriber not started), [`Store::generation`] is `None`:
//! nothing is cached, every lookup reads Redis; when it is up again the
//! counter moves, so nothing cached before is used. The same page holds
//! the node's "outage logged" mark (one line per node and outage).
//!
//! # Sentinel
//!
//! With `redis+sentinel://host:port[,host:port...]/MASTER[/db]` each
//! connection asks the sentinels, in order, for the master's address, and
//! checks that the Redis there is a master (`ROLE`): after a failover the
//! next connection goes to the new master.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::{ConnectionInfo, IntoConnectionInfo};

use super::fault::{RETRY_FIRST, RETRY_MAX};
use super::generation::Generation;
use super::{
    check_key, check_uri, decode_q, without_password, Entry, Store, StoreError, ANY_SERVICE,
};
use crate::forwarding::{ForwardTarget, ForwardingKind, TargetInstance};
use crate::log::{self, pr_log_level};

/// The key prefix without `?prefix=`.
pub const DEFAULT_PREFIX: &str = "push_redirect";
/// Longest `?prefix=`.
pub const MAX_PREFIX_LEN: usize = 64;

/// The Redis backend (see the module documentation).
pub struct RedisStore {
    target: Target,
    /// The URL without its password, for log lines.
    location: String,
    prefix: String,
    timeout: Duration,
    pid: u32,
    conn: Mutex<Link>,
    skipped: AtomicU64,
}

/// Where the Redis is.
#[derive(Debug, Clone)]
enum Target {
    /// `redis://`: this one.
    Direct(ConnectionInfo),
    /// `redis+sentinel://`: the master the sentinels name, asked again at
    /// every connection.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        /// Database, user and password for the master.
        redis: redis::RedisConnectionInfo,
    },
}

/// The sentinels' default port.
pub const SENTINEL_PORT: u16 = 26379;

/// Reads `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER[/db]`
/// (without its query).
fn sentinel_target(base: &str) -> Result<Target, String> {
    let rest = base
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or("expected redis+sentinel://")?;
    let (authority, path) = rest
        .split_once('/')
        .ok_or("no master name (…/MASTER[/db])")?;
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let mut sentinels = Vec::new();
    for h in hosts.split(',') {
        let (host, port) = match h.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') => (
                host,
                port.parse::<u16>()
                    .map_err(|_| format!("sentinel {h:?}: bad port"))?,
            ),
            _ => (h, SENTINEL_PORT),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("an empty sentinel address".into());
        }
        sentinels.push((host.to_string(), port));
    }
    let (master, db) = match path.split_once('/') {
        Some((m, d)) => (m, d),
        None => (path, "0"),
    };
    if master.is_empty()
        || !master
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_-.".contains(&c))
    {
        return Err("the master name: letters, digits, '_', '-', '.'".into());
    }
    // The user, password and database, read as a plain Redis URL reads them.
    let plain = match userinfo {
        Some(u) => format!("redis://{u}@localhost/{db}"),
        None => format!("redis://localhost/{db}"),
    };
    let info = plain
        .as_str()
        .into_connection_info()
        .map_err(|e| format!("user, password or database: {}", e.category()))?;
    Ok(Target::Sentinel {
        sentinels,
        master: master.to_string(),
        redis: info.redis,
    })
}

/// This process' connection, and when to try again without one.
struct Link {
    conn: Option<redis::Connection>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("location", &self.location)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn redis_error(op: &'static str, e: &redis::RedisError) -> StoreError {
    StoreError::Redis {
        op,
        message: e.to_string(),
    }
}

impl RedisStore {
    /// Reads `url` (`redis://...[?prefix=P]`); connects nothing yet.
    /// Errors name the URL without its password.
    pub fn open(url: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
        let location = without_password(url);
        let bad = |reason: String| StoreError::Open {
            path: location.clone().into(),
            reason,
        };
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (url, None),
        };
        let mut prefix = DEFAULT_PREFIX.to_string();
        for param in query.into_iter().flat_map(|q| q.split('&')) {
            match param.split_once('=') {
                Some(("prefix", p)) => {
                    if p.is_empty()
                        || p.len() > MAX_PREFIX_LEN
                        || !p
                            .bytes()
                            .all(|c| c.is_ascii_alphanumeric() || b"_-.".contains(&c))
                    {
                        return Err(bad(format!(
                            "prefix {p:?}: 1 to {MAX_PREFIX_LEN} letters, digits, '_', '-', '.'"
                        )));
                    }
                    prefix = p.to_string();
                }
                _ => {
                    return Err(bad(format!(
                        "unknown URL parameter {param:?} (known: prefix)"
                    )))
                }
            }
        }
        let lower = base.to_ascii_lowercase();
        let target = if lower.starts_with("redis+sentinel://") {
            sentinel_target(base).map_err(bad)?
        } else if lower.starts_with("redis://") {
            Target::Direct(
                base.into_connection_info()
                    .map_err(|e| bad(format!("not a Redis URL: {}", e.category())))?,
            )
        } else {
            return Err(bad("expected redis:// or redis+sentinel://".into()));
        };
        // The node's shared page, made now: in Kamailio's main process
        // (mod_init checks the store) before the fork.
        let _ = host_page();
        Ok(RedisStore {
            target,
            location,
            prefix,
            timeout,
            pid: std::process::id(),
            conn: Mutex::new(Link {
                conn: None,
                retry_at: None,
                backoff: RETRY_FIRST,
            }),
            skipped: AtomicU64::new(0),
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How many values reads have skipped (each also logged).
    pub fn skipped_values(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// The key of (`aor`, `service`).
    pub fn key(&self, aor: &str, service: &str) -> String {
        format!("{}:{aor}:{service}", self.prefix)
    }

    /// The channel every write publishes on.
    pub fn channel(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    fn index_key(&self, aor: &str) -> String {
        format!("{}#{aor}", self.prefix)
    }

    /// Runs `f` on this process' connection, connecting first if needed
    /// (not during the back-off after a failure). The whole call waits at
    /// most about the timeout.
    fn with_conn<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let now_pid = std::process::id();
        if now_pid != self.pid {
            return Err(StoreError::WrongProcess {
                opened_by: self.pid,
                used_by: now_pid,
            });
        }
        let mut link = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let start = Instant::now();
        if link.conn.is_none() {
            if link.retry_at.is_some_and(|t| start < t) {
                return Err(StoreError::Unavailable);
            }
            match self.connect() {
                Ok(c) => {
                    link.conn = Some(c);
                    link.retry_at = None;
                    link.backoff = RETRY_FIRST;
                }
                Err(e) => {
                    link.retry_at = Some(Instant::now() + link.backoff);
                    link.backoff = (link.backoff * 2).min(RETRY_MAX);
                    return Err(redis_error("connect", &e));
                }
            }
        }
        let Some(conn) = link.conn.as_mut() else {
            return Err(StoreError::Unavailable);
        };
        // What is left of the timeout bounds the command.
        let left = self
            .timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(1));
        let r = conn
            .set_read_timeout(Some(left))
            .and_then(|()| conn.set_write_timeout(Some(left)))
            .and_then(|()| f(conn));
        r.map_err(|e| {
            // A connection that failed once is not trusted again (a
            // reply may be half read).
            link.conn = None;
            redis_error(op, &e)
        })
    }

    /// A connection to the Redis (through the sentinels: to the master
    /// they name now, checked to be one), all within the timeout.
    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let deadline = Instant::now() + self.timeout;
        match &self.target {
            Target::Direct(info) => {
                redis::Client::open(info.clone())?.get_connection_with_timeout(self.timeout)
            }
            Target::Sentinel {
                sentinels,
                master,
                redis: auth,
            } => {
                let mut last = None;
                for (host, port) in sentinels {
                    match self.master_through(host, *port, master, auth, deadline) {
                        Ok(c) => return Ok(c),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    redis::RedisError::from((redis::ErrorKind::ClientError, "no sentinel"))
                }))
            }
        }
    }

    fn master_through(
        &self,
        host: &str,
        port: u16,
        master: &str,
        auth: &redis::RedisConnectionInfo,
        deadline: Instant,
    ) -> redis::RedisResult<redis::Connection> {
        let left = || {
            let l = deadline.saturating_duration_since(Instant::now());
            if l.is_zero() {
                Err(redis::RedisError::from((
                    redis::ErrorKind::IoError,
                    "store_timeout passed while asking the sentinels",
                )))
            } else {
                Ok(l)
            }
        };
        let sentinel = ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp(host.to_string(), port),
            redis: redis::RedisConnectionInfo::default(),
        };
        let mut s = redis::Client::open(sentinel)?.get_connection_with_timeout(left()?)?;
        s.set_read_timeout(Some(left()?))?;
        s.set_write_timeout(Some(left()?))?;
        let addr: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .query(&mut s)?;
        let (mhost, mport) = addr.ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::ClientError,
                "the sentinel knows no such master",
            ))
        })?;
        let mport = mport.parse::<u16>().map_err(|_| {
            redis::RedisError::from((
                redis::ErrorKind::ClientError,
                "the sentinel gave a bad port",
            ))
        })?;
        let info = ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp(mhost, mport),
            redis: auth.clone(),
        };
        let mut c = redis::Client::open(info)?.get_connection_with_timeout(left()?)?;
        c.set_read_timeout(Some(left()?))?;
        c.set_write_timeout(Some(left()?))?;
        // A master just demoted may still be named for a moment.
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c)?;
        match role.first() {
            Some(redis::Value::BulkString(r)) if r.as_slice() == b"master" => Ok(c),
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::ClientError,
                "the sentinel named a Redis that is not a master (yet)",
            ))),
        }
    }

    /// Decodes a value, or logs and counts it as skipped.
    fn decode_or_skip(&self, key: &str, value: &[u8]) -> Option<Entry> {
        match decode(value) {
            Ok(e) => Some(e),
            Err(reason) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                let shown: String = key.chars().take(300).collect();
                log::emit(
                    pr_log_level::Error,
                    &format!(
                        "corrupt entry in the forwarding store: key {shown:?} in {}: {reason} (skipped)",
                        self.location
                    ),
                );
                None
            }
        }
    }

    /// Every entry key under the prefix (SCAN, bounded per call by Redis).
    fn entry_keys(&self, conn: &mut redis::Connection) -> redis::RedisResult<Vec<String>> {
        let pattern = format!("{}:*", glob_escape(&self.prefix));
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(conn)?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// The live, valid entries among `keys`, ordered by AOR then service.
    fn read_entries(
        &self,
        conn: &mut redis::Connection,
        keys: &[String],
        now: i64,
    ) -> redis::RedisResult<Vec<Entry>> {
        let mut out = Vec::new();
        for chunk in keys.chunks(500) {
            let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(chunk).query(conn)?;
            for (k, v) in chunk.iter().zip(values) {
                if let Some(e) = v.and_then(|v| self.decode_or_skip(k, &v)) {
                    if e.is_live(now) {
                        out.push(e);
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.aor, &a.service).cmp(&(&b.aor, &b.service)));
        Ok(out)
    }
}

/// `s` with Redis' glob characters escaped (for `SCAN MATCH`).
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The value of an entry (see the module documentation).
pub fn encode(e: &Entry) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let version = if e.targets.iter().any(|t| t.instance.is_some()) {
        "pr2"
    } else {
        "pr1"
    };
    let mut out = format!(
        "{version}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        e.aor,
        e.service,
        e.kind.name(),
        opt(e.expires_at.map(|t| t.to_string())),
        e.created_at,
        opt(e.learned_from.clone()),
        opt(e.learned_status.map(|s| s.to_string())),
    );
    for t in &e.targets {
        out.push('\n');
        match t.q {
            Some(q) => out.push_str(&q.to_string()),
            None => out.push('-'),
        }
        out.push(' ');
        out.push_str(&t.uri);
        if let Some(i) = &t.instance {
            out.push(' ');
            out.push_str(&i.aor);
            out.push(' ');
            out.push_str(&i.instance);
        }
    }
    out
}

/// Reads and validates a value.
pub fn decode(value: &[u8]) -> Result<Entry, &'static str> {
    let text = std::str::from_utf8(value).map_err(|_| "not UTF-8")?;
    let mut lines = text.split('\n');
    let mut next = |what: &'static str| lines.next().ok_or(what);
    let instances = match next("empty")? {
        "pr1" => false,
        "pr2" => true,
        _ => return Err("unknown format"),
    };
    let aor = next("no aor")?.to_string();
    let service = next("no service")?.to_string();
    let kind = ForwardingKind::from_name(next("no kind")?).ok_or("unknown kind")?;
    let num = |s: &str, what: &'static str| -> Result<Option<i64>, &'static str> {
        match s {
            "-" => Ok(None),
            s => s.parse::<i64>().map(Some).map_err(|_| what),
        }
    };
    let expires_at = num(next("no expiry")?, "expiry is not a number")?;
    let created_at = num(next("no creation time")?, "creation time is not a number")?
        .ok_or("no creation time")?;
    let learned_from = match next("no learned_from")? {
        "-" => None,
        s => Some(s.to_string()),
    };
    let learned_status = num(next("no learned_status")?, "learned_status is not a number")?
        .map(|s| u16::try_from(s).map_err(|_| "learned_status out of range"))
        .transpose()?;
    let mut targets = Vec::new();
    for line in lines {
        if targets.len() == super::MAX_TARGETS {
            return Err("more targets than the cap");
        }
        let (q, rest) = line.split_once(' ').ok_or("target line without a space")?;
        let (uri, instance) = match rest.split_once(' ') {
            None => (rest, None),
            Some((uri, terminal)) if instances => {
                let (aor, instance) = terminal
                    .split_once(' ')
                    .ok_or("target terminal without its instance")?;
                let i = TargetInstance {
                    aor: aor.to_string(),
                    instance: instance.to_string(),
                };
                (uri, Some(i))
            }
            Some(_) => return Err("target URI empty, too long or with whitespace"),
        };
        let q = decode_q(q)?;
        check_uri("uri", uri).map_err(|_| "target URI empty, too long or with whitespace")?;
        targets.push(ForwardTarget {
            uri: uri.to_string(),
            q,
            instance,
        });
    }
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

impl Store for RedisStore {
    /// One `MGET` of the three keys (service, method, `*`).
    fn get(&self, aor: &str, service: &str, now: i64) -> Result<Option<Entry>, StoreError> {
        check_key("aor", aor)?;
        check_key("service", service)?;
        let method = service.split(':').next().unwrap_or(service);
        let mut keys = vec![self.key(aor, service)];
        if method != service {
            keys.push(self.key(aor, method));
        }
        if service != ANY_SERVICE {
            keys.push(self.key(aor, ANY_SERVICE));
        }
        let values: Vec<Option<Vec<u8>>> =
            self.with_conn("get", |c| redis::cmd("MGET").arg(&keys).query(c))?;
        Ok(keys
            .iter()
            .zip(values)
            .filter_map(|(k, v)| v.and_then(|v| self.decode_or_skip(k, &v)))
            .find(|e| e.is_live(now) && e.aor == aor))
    }

    /// One `SET` (with `EXAT` for an entry that expires) and the AOR's set,
    /// in one transaction.
    fn put(&self, entry: &Entry) -> Result<(), StoreError> {
        entry.validate()?;
        let key = self.key(&entry.aor, &entry.service);
        let index = self.index_key(&entry.aor);
        let value = encode(entry);
        self.with_conn("put", |c| {
            let mut p = redis::pipe();
            p.atomic();
            let set = p.cmd("SET").arg(&key).arg(&value);
            if let Some(t) = entry.expires_at {
                // An expiry in the past deletes the key at once (Redis).
                set.arg("EXAT").arg(t.max(1));
            }
            set.ignore();
            p.cmd("SADD").arg(&index).arg(&entry.service).ignore();
            p.cmd("PUBLISH")
                .arg(self.channel())
                .arg(&entry.aor)
                .ignore();
            p.query::<()>(c)
        })?;
        wrote();
        Ok(())
    }

    fn remove(&self, aor: &str, service: Option<&str>) -> Result<usize, StoreError> {
        check_key("aor", aor)?;
        if let Some(s) = service {
            check_key("service", s)?;
        }
        let index = self.index_key(aor);
        self.with_conn("remove", |c| {
            let services: Vec<String> = match service {
                Some(s) => vec![s.to_string()],
                None => redis::cmd("SMEMBERS").arg(&index).query(c)?,
            };
            if services.is_empty() {
                return Ok(0);
            }
            let keys: Vec<String> = services.iter().map(|s| self.key(aor, s)).collect();
            let (n,): (usize,) = redis::pipe()
                .atomic()
                .cmd("DEL")
                .arg(&keys)
                .cmd("SREM")
                .arg(&index)
                .arg(&services)
                .ignore()
                .cmd("PUBLISH")
                .arg(self.channel())
                .arg(aor)
                .ignore()
                .query(c)?;
            Ok(n)
        })
        .inspect(|_| wrote())
    }

    fn list(&self, aor: Option<&str>, now: i64) -> Result<Vec<Entry>, StoreError> {
        if let Some(a) = aor {
            check_key("aor", a)?;
        }
        self.with_conn("list", |c| {
            let keys = match aor {
                Some(a) => {
                    let services: Vec<String> =
                        redis::cmd("SMEMBERS").arg(self.index_key(a)).query(c)?;
                    services.iter().map(|s| self.key(a, s)).collect()
                }
                None => self.entry_keys(c)?,
            };
            self.read_entries(c, &keys, now)
        })
    }

    /// Nothing to do: Redis expires the keys itself.
    fn sweep(&self, _now: i64) -> Result<usize, StoreError> {
        Ok(0)
    }

    fn count(&self, now: i64) -> Result<usize, StoreError> {
        Ok(self.list(None, now)?.len())
    }

    /// The node's counter while its subscriber is subscribed; else
    /// `None` (nothing cached).
    fn generation(&self) -> Result<Option<u64>, StoreError> {
        Ok(host_page()
            .filter(|p| p.subscribed().load(Ordering::Acquire) == 1)
            .map(Generation::current))
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn outage_mark(&self) -> Option<&AtomicU64> {
        host_page().map(Generation::outage_mark)
    }
}

/// The node's shared page (counter, outage mark, subscription state):
/// made at the first call, which must come before the fork for the page
/// to be shared (Kamailio: `mod_init` opens the store to check it).
pub fn host_page() -> Option<&'static Generation> {
    static PAGE: std::sync::OnceLock<Option<Generation>> = std::sync::OnceLock::new();
    PAGE.get_or_init(|| match Generation::anonymous() {
        Ok(g) => Some(g),
        Err(e) => {
            log::emit(
                pr_log_level::Warn,
                &format!("forwarding store (Redis) without read cache: {e}"),
            );
            None
        }
    })
    .as_ref()
}

/// A write of this process: the node's other processes drop their cached
/// answers at once (the other nodes through the published message).
fn wrote() {
    if let Some(p) = host_page() {
        p.bump();
    }
}

/// The node's subscriber (SPEC §6): subscribes to the store's channel
/// and bumps the node's counter at every message, until `stop()` says so
/// (checked at least every second). While not subscribed, the node reads
/// Redis on every lookup; each (re)subscription, and each loss, moves the
/// counter. Reconnects with back-off; one log line when the subscription
/// is lost, one when it is back. Errors: a bad URL, or no shared page.
pub fn run_subscriber(
    url: &str,
    timeout: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<(), StoreError> {
    let store = RedisStore::open(url, timeout)?;
    let page = host_page().ok_or(StoreError::Unavailable)?;
    let channel = store.channel();
    let mut backoff = RETRY_FIRST;
    let mut lost_logged = false;
    let down = |why: &str, logged: &mut bool| {
        page.subscribed().store(0, Ordering::Release);
        page.bump();
        if !*logged {
            *logged = true;
            log::emit(
                pr_log_level::Warn,
                &format!(
                    "forwarding store {}: no subscription to {channel} ({why}): every lookup \
                     reads Redis until it is back",
                    store.location
                ),
            );
        }
    };
    while !stop() {
        let mut conn = match store.connect() {
            Ok(c) => c,
            Err(e) => {
                down(&e.to_string(), &mut lost_logged);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(RETRY_MAX);
                continue;
            }
        };
        let mut ps = conn.as_pubsub();
        let subscribed = ps
            .set_read_timeout(Some(Duration::from_secs(1)))
            .and_then(|()| ps.subscribe(&channel));
        if let Err(e) = subscribed {
            down(&e.to_string(), &mut lost_logged);
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(RETRY_MAX);
            continue;
        }
        // Whatever changed while not subscribed: the counter moves.
        page.subscribed().store(1, Ordering::Release);
        page.bump();
        backoff = RETRY_FIRST;
        if lost_logged {
            lost_logged = false;
            log::emit(
                pr_log_level::Info,
                &format!(
                    "forwarding store {}: subscribed to {channel} again",
                    store.location
                ),
            );
        }
        let why = loop {
            if stop() {
                page.subscribed().store(0, Ordering::Release);
                page.bump();
                return Ok(());
            }
            match ps.get_message() {
                Ok(_) => page.bump(),
                Err(e) if e.is_timeout() => {}
                Err(e) => break e.to_string(),
            }
        };
        down(&why, &mut lost_logged);
    }
    page.subscribed().store(0, Ordering::Release);
    page.bump();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            aor: "sip:u1@example.com".into(),
            service: "MESSAGE:text/plain".into(),
            kind: ForwardingKind::Temporary,
            targets: vec![
                ForwardTarget {
                    uri: "sip:a@example.com".into(),
                    q: Some(500),
                    instance: None,
                },
                ForwardTarget {
                    uri: "sip:b@example.com;transport=tcp".into(),
                    q: None,
                    instance: None,
                },
            ],
            expires_at: Some(1_700_000_060),
            created_at: 1_700_000_000,
            learned_from: Some("sip:t1@127.0.0.1:5071".into()),
            learned_status: Some(302),
        }
    }

    #[test]
    fn values_round_trip_and_garbage_is_an_error() {
        let e = entry();
        assert_eq!(decode(encode(&e).as_bytes()), Ok(e.clone()));
        let mut p = e.clone();
        p.kind = ForwardingKind::Provisioned;
        p.expires_at = None;
        p.learned_from = None;
        p.learned_status = None;
        assert_eq!(decode(encode(&p).as_bytes()), Ok(p));
        // A target that names a terminal (pr2); the others stay URIs.
        let mut i = e.clone();
        i.targets[1].instance = Some(TargetInstance {
            aor: "sip:u1@example.com".into(),
            instance: "\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\"".into(),
        });
        let v = encode(&i);
        assert!(v.starts_with("pr2\n"), "{v}");
        assert!(encode(&e).starts_with("pr1\n"));
        assert_eq!(decode(v.as_bytes()), Ok(i));
        for bad in [
            &b""[..],
            b"pr2\na\nb",
            b"pr1\nsip:a@b\nM\nforever\n-\n1\n-\n-\n- sip:x@y",
            b"pr1\nsip:a@b\nM\npermanent\nsoon\n1\n-\n-\n- sip:x@y",
            b"pr1\nsip:a@b\nM\npermanent\n-\n1\n-\n-",
            b"pr1\nsip:a@b\nM\npermanent\n-\n1\n-\n99999\n- sip:x@y",
            b"pr1\nsip:a@b\nM\npermanent\n-\n1\n-\n-\n2000 sip:x@y",
            b"pr1\nsip:a@b\nM\npermanent\n-\n1\n-\n-\n- sip:x y",
            // A terminal in a pr1 value, or a broken one in pr2.
            b"pr1\nsip:a@b\nM\npermanent\n-\n1\n-\n-\n- sip:x@y sip:a@b i1",
            b"pr2\nsip:a@b\nM\npermanent\n-\n1\n-\n-\n- sip:x@y sip:a@b",
            b"pr2\nsip:a@b\nM\npermanent\n-\n1\n-\n-\n- sip:x@y sip:a@b i1 extra",
            b"pr2\nsip:a@b\nM\npermanent\n-\n1\n-\n-\n- sip:x@y  i1",
            b"pr2\nsip:a@b\nM\npermanent\n-\n1\n-\n-\n- sip:x@y sip:a@b \x01",
            b"\xff\xfe",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn urls_are_read_and_bad_ones_refused_without_the_password() {
        let t = Duration::from_millis(200);
        let s = RedisStore::open("redis://127.0.0.1:6390/2?prefix=pr-a", t).unwrap();
        assert_eq!(s.prefix(), "pr-a");
        assert!(matches!(&s.target, Target::Direct(i) if i.redis.db == 2));
        assert_eq!(s.key("sip:u@x", "M"), "pr-a:sip:u@x:M");
        let s = RedisStore::open("redis://:s3cret@127.0.0.1", t).unwrap();
        assert_eq!(s.prefix(), DEFAULT_PREFIX);
        assert!(!format!("{s:?}").contains("s3cret"));
        for bad in [
            "redis://:s3cret@127.0.0.1/0?prefix=",
            "redis://:s3cret@127.0.0.1/0?prefix=a*b",
            "redis://:s3cret@127.0.0.1/0?password=x",
            "redis://:s3cret@127.0.0.1:notaport/0",
            "rediss://:s3cret@127.0.0.1/0",
        ] {
            let e = RedisStore::open(bad, t).unwrap_err();
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        // Sentinels: every address (default port 26379), the master, the
        // database, the password; bad ones refused without the password.
        let s = RedisStore::open(
            "redis+sentinel://:s3cret@10.0.0.1:26380,[::1],h3/mymaster/3?prefix=x",
            t,
        )
        .unwrap();
        let Target::Sentinel {
            sentinels,
            master,
            redis,
        } = &s.target
        else {
            panic!("{:?}", s.target);
        };
        assert_eq!(
            sentinels,
            &[
                ("10.0.0.1".to_string(), 26380),
                ("::1".to_string(), SENTINEL_PORT),
                ("h3".to_string(), SENTINEL_PORT)
            ]
        );
        assert_eq!(master, "mymaster");
        assert_eq!((redis.db, redis.password.as_deref()), (3, Some("s3cret")));
        assert!(!format!("{s:?}").contains("s3cret"));
        for bad in [
            "redis+sentinel://:s3cret@10.0.0.1:26379",
            "redis+sentinel://:s3cret@10.0.0.1:26379/",
            "redis+sentinel://:s3cret@10.0.0.1:port/m",
            "redis+sentinel://:s3cret@,/m",
            "redis+sentinel://:s3cret@h/m/notadb",
            "redis+sentinel://:s3cret@h/m a",
        ] {
            let e = RedisStore::open(bad, t).unwrap_err();
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
    }
}
