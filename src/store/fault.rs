//! What this process does when its store fails (SPEC §6, README "When the
//! store fails"): [`Resilient`], between the read cache ([`super::Cached`])
//! and a backend.
//!
//! A store can fail under a running proxy: a full disk, its file or folder
//! removed, a lock held by another program past `store_timeout`, a Redis
//! that is down. None of that may stop a PUSH request: a lookup that cannot
//! read the store routes through the registered terminals, and a redirect is
//! still followed. What [`Resilient`] adds:
//!
//! - **one log line per outage**, not per request: the first failure logs
//!   one error, the first success after it one info line. The "an outage
//!   is logged" mark is shared by the processes of the host when the
//!   backend offers one ([`Store::outage_mark`]; SQLite: a word in its
//!   `<store>-gen` file), so the first process to fail logs, the others
//!   stay quiet;
//! - **counts** for the statistics ([`FaultCounts`], taken by the engine
//!   after each call): every store operation that did not succeed
//!   (`store_errors`), every queued forwarding that landed later
//!   (`forwardings_learned` counts what was stored, when it was stored),
//!   every queued write dropped because the queue was full;
//! - **a bounded queue of the writes a decision made** (a learned
//!   forwarding, a dropped one) while the store failed: at most
//!   [`MAX_QUEUED`] per process, one per (AOR, service) — a later write of
//!   the same key replaces an earlier one —, the oldest dropped (and
//!   counted) when full. The queue is written, in order, at a later use of
//!   the store once its back-off has passed (100 ms, doubling up to 5 s),
//!   never for longer than `store_timeout` in one call. While writes are
//!   queued, new ones go behind them, so an older write never lands over a
//!   newer one; a write made by the operator (RPC) is tried at once and
//!   replaces a queued write of the same key;
//! - **reopening**: a backend that reports its handle is no longer on its
//!   store ([`Store::check`]: SQLite's file removed or replaced) is dropped
//!   and opened again (with back-off while that fails); the read cache
//!   starts over, since the answers it kept came from the old store.
//!
//! No call waits on the store longer than `store_timeout` per operation
//! (the backend's own bound: SQLite's busy timeout): while in back-off, a
//! write is queued without touching the store.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Entry, Store, StoreError};
use crate::log::{self, pr_log_level};

/// Most writes one process keeps while the store fails.
pub const MAX_QUEUED: usize = 1024;
/// The first wait before the store is tried again after a failure.
pub const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// `store_timeout`'s default: the longest one operation may wait on the
/// store.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);

/// A write a decision made, kept while the store fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Store this entry (a learned forwarding).
    Put(Entry),
    /// Remove the entry of (`aor`, `service`), or every entry of `aor`.
    Remove {
        /// The AOR.
        aor: String,
        /// The service; `None`: every service.
        service: Option<String>,
    },
}

impl Write {
    fn aor(&self) -> &str {
        match self {
            Write::Put(e) => &e.aor,
            Write::Remove { aor, .. } => aor,
        }
    }

    fn service(&self) -> Option<&str> {
        match self {
            Write::Put(e) => Some(&e.service),
            Write::Remove { service, .. } => service.as_deref(),
        }
    }

    /// Whether `later`, written after `self`, makes `self` pointless.
    fn superseded_by(&self, aor: &str, service: Option<&str>) -> bool {
        self.aor() == aor && (service.is_none() || self.service() == service)
    }

    fn apply(&self, backend: &dyn Store) -> Result<(), StoreError> {
        match self {
            Write::Put(e) => backend.put(e),
            Write::Remove { aor, service } => backend.remove(aor, service.as_deref()).map(drop),
        }
    }

    /// Whether the store holds this very forwarding already (a put only).
    fn already_in(&self, backend: &dyn Store, now: i64) -> bool {
        let Write::Put(e) = self else {
            return false;
        };
        matches!(
            backend.get(&e.aor, &e.service, now),
            Ok(Some(x)) if x.aor == e.aor && x.service == e.service && x.kind == e.kind
                && x.targets == e.targets
        )
    }

    /// Whether landing it counts as a forwarding learned.
    fn learned(&self) -> bool {
        matches!(self, Write::Put(e) if e.learned_status.is_some())
    }
}

/// What [`Resilient::write_or_queue`] did with a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// It is in the store.
    Stored,
    /// The store failed (or is in back-off): the write waits in the queue.
    Queued,
    /// Refused, not queued: an input over a cap ([`StoreError::TooBig`],
    /// [`StoreError::Invalid`]), or a store of another process.
    Refused(StoreError),
}

/// What happened since the counts were last taken (see the module
/// documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Store operations that did not succeed (`store_errors`).
    pub errors: u32,
    /// Queued learned forwardings that landed (`forwardings_learned`).
    pub learned: u32,
    /// Queued writes dropped because the queue was full.
    pub dropped: u32,
}

impl FaultCounts {
    /// Whether there is anything to count.
    pub fn is_empty(&self) -> bool {
        *self == FaultCounts::default()
    }
}

/// The store's state, as one process sees it ([`Resilient::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStatus {
    /// The backend's kind ([`Store::kind`]); `none` before any was opened.
    pub kind: &'static str,
    /// Whether this process has the store open.
    pub open: bool,
    /// Whether this process is in an outage of the store.
    pub outage: bool,
    /// When the host's current outage began (Unix seconds, from the shared
    /// mark); 0: none logged.
    pub host_outage_since: u64,
    /// Writes this process keeps queued.
    pub queued: usize,
}

/// How a backend is opened again; it must not wait longer than the
/// timeout it was given.
pub type Opener = Box<dyn FnMut() -> Result<Box<dyn Store>, StoreError> + Send>;

/// A backend with this process' fault handling (see the module
/// documentation). It is a [`Store`]: reads and the operator's writes go
/// through it; a decision's writes go through [`Resilient::write_or_queue`].
pub struct Resilient {
    state: Mutex<State>,
    /// Something to retry: a queued write, or a backend to open again.
    pending: AtomicBool,
    /// The Unix second of the last [`Store::check`] of the backend.
    checked_at: AtomicI64,
    /// Moves when the backend is replaced (the read cache starts over).
    epoch: AtomicU64,
}

struct State {
    backend: Option<Box<dyn Store>>,
    /// The backend dropped by [`Store::check`] while no other could be
    /// opened: kept for its [`Store::outage_mark`], shared with the other
    /// processes that used the same store.
    stale: Option<Box<dyn Store>>,
    opener: Option<Opener>,
    queue: VecDeque<Write>,
    /// The current outage: when it began and what kind of operation failed.
    outage: Option<(Instant, bool)>,
    retry_at: Option<Instant>,
    backoff: Duration,
    counts: FaultCounts,
    /// How many queued writes landed in the current outage.
    landed: u32,
    timeout: Duration,
}

fn is_fault(e: &StoreError) -> bool {
    !matches!(
        e,
        StoreError::TooBig { .. } | StoreError::Invalid(_) | StoreError::WrongProcess { .. }
    )
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Resilient {
    /// Opens a backend with `opener` now (its error is returned: a store
    /// that cannot be opened at start is refused), and again whenever it
    /// must be reopened. `timeout` bounds the queue's writing in one call.
    pub fn open(mut opener: Opener, timeout: Duration) -> Result<Resilient, StoreError> {
        let backend = opener()?;
        Ok(Resilient::with_state(Some(backend), Some(opener), timeout))
    }

    /// `backend` with the fault handling, never reopened.
    pub fn fixed(backend: Box<dyn Store>) -> Resilient {
        Resilient::with_state(Some(backend), None, DEFAULT_TIMEOUT)
    }

    fn with_state(
        backend: Option<Box<dyn Store>>,
        opener: Option<Opener>,
        timeout: Duration,
    ) -> Resilient {
        Resilient {
            state: Mutex::new(State {
                backend,
                stale: None,
                opener,
                queue: VecDeque::new(),
                outage: None,
                retry_at: None,
                backoff: RETRY_FIRST,
                counts: FaultCounts::default(),
                landed: 0,
                timeout,
            }),
            pending: AtomicBool::new(false),
            checked_at: AtomicI64::new(unix_now()),
            epoch: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the counts gathered since the last call.
    pub fn take_counts(&self) -> FaultCounts {
        std::mem::take(&mut self.state().counts)
    }

    /// How many writes wait in the queue.
    pub fn queued(&self) -> usize {
        self.state().queue.len()
    }

    /// Whether the store is failing now, as far as this process knows.
    pub fn in_outage(&self) -> bool {
        self.state().outage.is_some()
    }

    /// What `push_redirect.stats` shows of the store, seen from this
    /// process.
    pub fn status(&self) -> StoreStatus {
        let s = self.state();
        let kind = s
            .backend
            .as_deref()
            .or(s.stale.as_deref())
            .map_or("none", Store::kind);
        StoreStatus {
            kind,
            open: s.backend.is_some(),
            outage: s.outage.is_some(),
            host_outage_since: s.mark().map_or(0, |m| m.load(Ordering::Acquire)),
            queued: s.queue.len(),
        }
    }

    /// A decision's write: made now if the store works and nothing is
    /// queued; else queued (see the module documentation).
    pub fn write_or_queue(&self, w: Write) -> Written {
        if let Write::Put(e) = &w {
            if let Err(err) = e.validate() {
                return Written::Refused(err);
            }
        }
        let mut s = self.state();
        self.retry_if_due(&mut s);
        // Never into a file that was removed (no one would read it).
        self.check_backend(&mut s, true);
        if s.queue.is_empty() && s.backend.is_some() && !s.waiting() {
            let r = match s.backend.as_deref() {
                Some(b) => w.apply(b),
                None => Err(StoreError::Unavailable),
            };
            match r {
                Ok(()) => {
                    self.healed(&mut s, false);
                    return Written::Stored;
                }
                Err(e) if !is_fault(&e) => return Written::Refused(e),
                Err(e) => self.failed(&mut s, "write", &e, false, true),
            }
        } else {
            s.counts.errors = s.counts.errors.saturating_add(1);
        }
        self.enqueue(&mut s, w);
        Written::Queued
    }

    fn enqueue(&self, s: &mut State, w: Write) {
        let (aor, service) = (w.aor().to_string(), w.service().map(str::to_string));
        s.queue
            .retain(|q| !q.superseded_by(&aor, service.as_deref()));
        if s.queue.len() >= MAX_QUEUED {
            s.queue.pop_front();
            s.counts.dropped = s.counts.dropped.saturating_add(1);
        }
        s.queue.push_back(w);
        self.pending.store(true, Ordering::Release);
    }

    /// Logs the start of an outage (once), counts the failure, and waits
    /// before the next try.
    /// `counted`: the failure of an operation a caller asked for (not of
    /// a retry, a reopening or a check).
    fn failed(&self, s: &mut State, op: &str, e: &StoreError, read: bool, counted: bool) {
        if counted {
            s.counts.errors = s.counts.errors.saturating_add(1);
        }
        let now = Instant::now();
        s.retry_at = Some(now + s.backoff);
        s.backoff = (s.backoff * 2).min(RETRY_MAX);
        if s.outage.is_some() {
            return;
        }
        s.outage = Some((now, read));
        s.landed = 0;
        let first = match s.mark() {
            Some(mark) => mark
                .compare_exchange(
                    0,
                    unix_now().max(1) as u64,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok(),
            None => true,
        };
        if first {
            log::emit(
                pr_log_level::Error,
                &format!(
                    "forwarding store unusable ({op}: {e}): PUSH requests still go to the \
                     registered terminals; forwardings learned meanwhile are queued (at most \
                     {MAX_QUEUED} per process) and written when it works again \
                     (one line per outage; see the statistic store_errors)"
                ),
            );
        }
    }

    /// Ends the outage (one info line) once the kind of operation that
    /// failed works again and nothing waits in the queue.
    fn healed(&self, s: &mut State, read: bool) {
        let Some((since, by_read)) = s.outage else {
            s.backoff = RETRY_FIRST;
            return;
        };
        if (read && !by_read) || !s.queue.is_empty() {
            return;
        }
        s.outage = None;
        s.retry_at = None;
        s.backoff = RETRY_FIRST;
        let last = match s.mark() {
            Some(mark) => mark.swap(0, Ordering::AcqRel) != 0,
            None => true,
        };
        s.stale = None;
        if last {
            log::emit(
                pr_log_level::Info,
                &format!(
                    "forwarding store works again after {} ms; {} queued write(s) written",
                    since.elapsed().as_millis(),
                    s.landed
                ),
            );
        }
    }

    /// Whether the back-off after a failure still runs.
    fn due(s: &State) -> bool {
        s.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    /// Opens the backend again and writes the queue, if there is
    /// something to retry and the back-off has passed.
    fn retry_if_due(&self, s: &mut State) {
        if !self.pending.load(Ordering::Acquire) || !Self::due(s) {
            return;
        }
        if s.backend.is_none() && !self.reopen(s) {
            return;
        }
        self.flush(s);
    }

    fn reopen(&self, s: &mut State) -> bool {
        let Some(opener) = s.opener.as_mut() else {
            return false;
        };
        match opener() {
            Ok(b) => {
                s.backend = Some(b);
                self.epoch.fetch_add(1, Ordering::AcqRel);
                if s.queue.is_empty() {
                    self.pending.store(false, Ordering::Release);
                    self.healed(s, true);
                }
                true
            }
            Err(e) => {
                self.failed(s, "reopen", &e, true, false);
                false
            }
        }
    }

    /// Writes the queue in order, within `timeout`; stops at the first
    /// failure.
    fn flush(&self, s: &mut State) {
        let start = Instant::now();
        let now = unix_now();
        while let Some(w) = s.queue.front() {
            if start.elapsed() >= s.timeout {
                return;
            }
            // A temporary forwarding that expired while it waited: nothing
            // to write.
            if matches!(w, Write::Put(e) if !e.is_live(now)) {
                s.queue.pop_front();
                continue;
            }
            let r = match s.backend.as_deref() {
                // The same forwarding stored meanwhile (by another process
                // that queued it too): nothing to write, nothing learned.
                Some(b) if w.already_in(b, now) => Ok(false),
                Some(b) => w.apply(b).map(|()| true),
                None => return,
            };
            match r {
                Ok(false) => {
                    s.queue.pop_front();
                }
                Ok(true) => {
                    if w.learned() {
                        s.counts.learned = s.counts.learned.saturating_add(1);
                    }
                    s.landed = s.landed.saturating_add(1);
                    s.queue.pop_front();
                }
                Err(StoreError::TooBig { .. } | StoreError::Invalid(_)) => {
                    s.queue.pop_front();
                    s.counts.dropped = s.counts.dropped.saturating_add(1);
                }
                // A store of another process (after a fork): left alone.
                Err(StoreError::WrongProcess { .. }) => return,
                Err(e) => {
                    self.failed(s, "write", &e, false, false);
                    return;
                }
            }
        }
        self.pending.store(s.backend.is_none(), Ordering::Release);
        self.healed(s, false);
    }

    /// Drops the backend after [`Store::check`] failed and opens it again
    /// at once (one warning for the host); if that fails, an outage
    /// begins and it is tried again with back-off.
    fn lost(&self, s: &mut State, e: &StoreError) {
        if s.opener.is_none() {
            return;
        }
        s.stale = s.backend.take();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.pending.store(true, Ordering::Release);
        s.retry_at = None;
        if self.reopen(s) {
            if s.backend.as_deref().is_none_or(Store::announce) {
                log::emit(
                    pr_log_level::Warn,
                    &format!("{e}: opened it again (empty if it was removed)"),
                );
            }
            if s.outage.is_none() {
                s.stale = None;
            }
            self.flush(s);
        }
    }

    /// Checks the backend, at most once a second (reads), or now.
    fn check_backend(&self, s: &mut State, always: bool) {
        if !always {
            let now = unix_now();
            if self.checked_at.swap(now, Ordering::AcqRel) == now {
                return;
            }
        }
        let r = match s.backend.as_deref() {
            Some(b) => b.check(),
            None => return,
        };
        if let Err(e) = r {
            if is_fault(&e) {
                self.lost(s, &e);
            }
        }
    }

    /// Runs a read on the backend: counts and logs its failure.
    fn read<T>(
        &self,
        op: &str,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut s = self.state();
        self.retry_if_due(&mut s);
        self.check_backend(&mut s, false);
        let r = match s.backend.as_deref() {
            Some(b) => f(b),
            None => Err(StoreError::Unavailable),
        };
        match &r {
            Ok(_) => self.healed(&mut s, true),
            Err(StoreError::Unavailable) => {
                s.counts.errors = s.counts.errors.saturating_add(1);
            }
            Err(e) if is_fault(e) => self.failed(&mut s, op, e, true, true),
            Err(_) => {}
        }
        r
    }

    /// Runs an operator's (or the sweep's) write now: a queued write of
    /// the same key is dropped first, as this one is newer.
    fn write_now<T>(
        &self,
        op: &str,
        aor: Option<(&str, Option<&str>)>,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut s = self.state();
        if let Some((a, service)) = aor {
            s.queue.retain(|q| !q.superseded_by(a, service));
        }
        self.retry_if_due(&mut s);
        self.check_backend(&mut s, true);
        let r = match s.backend.as_deref() {
            Some(b) => f(b),
            None => Err(StoreError::Unavailable),
        };
        match &r {
            Ok(_) => self.healed(&mut s, false),
            Err(StoreError::Unavailable) => {
                s.counts.errors = s.counts.errors.saturating_add(1);
            }
            Err(e) if is_fault(e) => self.failed(&mut s, op, e, false, true),
            Err(_) => {}
        }
        r
    }
}

impl State {
    /// The host's "an outage is logged" mark: the dropped backend's while
    /// there is one (the other processes still use it), else the
    /// backend's.
    fn mark(&self) -> Option<&AtomicU64> {
        self.stale
            .as_deref()
            .or(self.backend.as_deref())
            .and_then(Store::outage_mark)
    }

    /// Whether a failure's back-off still runs.
    fn waiting(&self) -> bool {
        !Resilient::due(self)
    }
}

impl Store for Resilient {
    fn get(&self, aor: &str, service: &str, now: i64) -> Result<Option<Entry>, StoreError> {
        self.read("get", |b| b.get(aor, service, now))
    }

    fn put(&self, entry: &Entry) -> Result<(), StoreError> {
        entry.validate()?;
        self.write_now("put", Some((&entry.aor, Some(&entry.service))), |b| {
            b.put(entry)
        })
    }

    fn remove(&self, aor: &str, service: Option<&str>) -> Result<usize, StoreError> {
        self.write_now("remove", Some((aor, service)), |b| b.remove(aor, service))
    }

    fn list(&self, aor: Option<&str>, now: i64) -> Result<Vec<Entry>, StoreError> {
        self.read("list", |b| b.list(aor, now))
    }

    /// Skipped (0) while a failure's back-off runs: housekeeping never
    /// makes a request wait on a failing store.
    fn sweep(&self, now: i64) -> Result<usize, StoreError> {
        if self.state().waiting() {
            return Ok(0);
        }
        self.write_now("sweep", None, |b| b.sweep(now))
    }

    fn count(&self, now: i64) -> Result<usize, StoreError> {
        self.read("count", |b| b.count(now))
    }

    /// The backend's counter, moved by each reopening. First (at most
    /// once a second) checks that the backend is still on its store, and
    /// writes the queue when its back-off has passed, so that what lands
    /// is read. `Ok(None)` while no backend is open.
    fn generation(&self) -> Result<Option<u64>, StoreError> {
        let mut s = self.state();
        self.retry_if_due(&mut s);
        self.check_backend(&mut s, false);
        let epoch = self.epoch.load(Ordering::Acquire);
        match s.backend.as_deref() {
            Some(b) => Ok(b.generation()?.map(|g| g.wrapping_add(epoch << 40))),
            None => Ok(None),
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        let mut s = self.state();
        self.check_backend(&mut s, true);
        match s.backend {
            Some(_) => Ok(()),
            None => Err(StoreError::Unavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forwarding::{ForwardTarget, ForwardingKind};
    use std::collections::BTreeMap;
    use std::ffi::c_void;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    /// Every log line of the process; tests look for their own tag.
    static LINES: Mutex<Vec<(pr_log_level, String)>> = Mutex::new(Vec::new());

    unsafe extern "C" fn sink(_: *mut c_void, level: pr_log_level, msg: *const u8, len: usize) {
        // SAFETY: the log bridge hands a (ptr, len) valid for the call.
        let text = String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(msg, len) });
        LINES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((level, text.into_owned()));
    }

    /// The tests that count a line every test may log run one at a time.
    fn serial() -> MutexGuard<'static, ()> {
        static ONE: Mutex<()> = Mutex::new(());
        ONE.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lines(level: pr_log_level, tag: &str) -> usize {
        log::set(Some(sink), std::ptr::null_mut(), pr_log_level::Debug);
        LINES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(l, m)| *l == level && m.contains(tag))
            .count()
    }

    /// An in-memory store whose faults the test switches on and off.
    #[derive(Clone, Default)]
    struct Flaky(Arc<FlakyInner>);

    #[derive(Default)]
    struct FlakyInner {
        tag: String,
        entries: Mutex<BTreeMap<(String, String), Entry>>,
        fail_writes: AtomicBool,
        fail_reads: AtomicBool,
        moved: AtomicBool,
        writes_tried: AtomicU32,
        generation: AtomicU64,
        mark: AtomicU64,
    }

    impl Flaky {
        fn new(tag: &str) -> Flaky {
            log::set(Some(sink), std::ptr::null_mut(), pr_log_level::Debug);
            Flaky(Arc::new(FlakyInner {
                tag: tag.into(),
                ..FlakyInner::default()
            }))
        }
        fn fault(&self) -> StoreError {
            StoreError::Sqlite {
                op: "test",
                message: format!("{} injected", self.0.tag),
            }
        }
        fn write(&self) -> Result<(), StoreError> {
            self.0.writes_tried.fetch_add(1, Ordering::SeqCst);
            if self.0.fail_writes.load(Ordering::SeqCst) {
                return Err(self.fault());
            }
            self.0.generation.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn read(&self) -> Result<(), StoreError> {
            if self.0.fail_reads.load(Ordering::SeqCst) {
                return Err(self.fault());
            }
            Ok(())
        }
        fn stored(&self) -> Vec<(String, String)> {
            self.0.entries.lock().unwrap().keys().cloned().collect()
        }
        fn tried(&self) -> u32 {
            self.0.writes_tried.load(Ordering::SeqCst)
        }
        fn set(&self, flag: &AtomicBool, on: bool) {
            flag.store(on, Ordering::SeqCst);
        }
    }

    impl Store for Flaky {
        fn get(&self, aor: &str, service: &str, _: i64) -> Result<Option<Entry>, StoreError> {
            self.read()?;
            let m = self.0.entries.lock().unwrap();
            Ok(m.get(&(aor.to_string(), service.to_string())).cloned())
        }
        fn put(&self, e: &Entry) -> Result<(), StoreError> {
            self.write()?;
            let mut m = self.0.entries.lock().unwrap();
            m.insert((e.aor.clone(), e.service.clone()), e.clone());
            Ok(())
        }
        fn remove(&self, aor: &str, service: Option<&str>) -> Result<usize, StoreError> {
            self.write()?;
            let mut m = self.0.entries.lock().unwrap();
            let before = m.len();
            m.retain(|(a, s), _| a != aor || service.is_some_and(|x| x != s));
            Ok(before - m.len())
        }
        fn list(&self, _: Option<&str>, _: i64) -> Result<Vec<Entry>, StoreError> {
            self.read()?;
            Ok(self.0.entries.lock().unwrap().values().cloned().collect())
        }
        fn sweep(&self, _: i64) -> Result<usize, StoreError> {
            self.write().map(|()| 0)
        }
        fn count(&self, _: i64) -> Result<usize, StoreError> {
            self.read()?;
            Ok(self.0.entries.lock().unwrap().len())
        }
        fn generation(&self) -> Result<Option<u64>, StoreError> {
            Ok(Some(self.0.generation.load(Ordering::SeqCst)))
        }
        fn check(&self) -> Result<(), StoreError> {
            if self.0.moved.load(Ordering::SeqCst) {
                return Err(StoreError::Moved {
                    path: self.0.tag.clone().into(),
                });
            }
            Ok(())
        }
        fn outage_mark(&self) -> Option<&AtomicU64> {
            Some(&self.0.mark)
        }
    }

    fn learned(aor: &str, service: &str) -> Entry {
        Entry {
            aor: aor.into(),
            service: service.into(),
            kind: ForwardingKind::Permanent,
            targets: vec![ForwardTarget {
                uri: "sip:t2@127.0.0.1:5072".into(),
                q: None,
                instance: None,
            }],
            expires_at: None,
            created_at: 1,
            learned_from: Some("sip:t1@127.0.0.1:5071".into()),
            learned_status: Some(301),
        }
    }

    /// Lets the back-off pass.
    fn after_backoff(r: &Resilient) {
        r.state().retry_at = Some(Instant::now());
    }

    #[test]
    fn a_full_store_queues_learned_writes_logs_once_and_writes_them_when_it_works_again() {
        let _serial = serial();
        let f = Flaky::new("tag-disk-full");
        let info = lines(pr_log_level::Info, "1 queued write(s) written");
        let r = Resilient::fixed(Box::new(f.clone()));
        f.set(&f.0.fail_writes, true);
        // 30 decisions learn the same forwarding while writes fail.
        for _ in 0..30 {
            assert_eq!(
                r.write_or_queue(Write::Put(learned("sip:u1@x", "M"))),
                Written::Queued
            );
        }
        let c = r.take_counts();
        assert_eq!(c.errors, 30, "every write not stored counts");
        assert_eq!((c.learned, c.dropped), (0, 0));
        assert_eq!(r.queued(), 1, "one per key");
        assert_eq!(f.tried(), 1, "in back-off the store is not touched");
        assert_eq!(r.sweep(5), Ok(0), "nor swept");
        assert_eq!(f.tried(), 1);
        assert!(r.in_outage());
        assert_eq!(lines(pr_log_level::Error, "tag-disk-full"), 1);
        // Reads still work meanwhile, and do not end the outage.
        assert_eq!(r.get("sip:u1@x", "M", 5).unwrap(), None);
        assert!(r.in_outage());
        // Still failing after the back-off: tried again, still one line.
        after_backoff(&r);
        assert_eq!(r.generation().unwrap(), Some(0));
        assert_eq!(f.tried(), 2);
        assert_eq!(lines(pr_log_level::Error, "tag-disk-full"), 1);
        // Space again: the next use of the store after the back-off
        // writes the queue; the forwarding counts as learned then.
        f.set(&f.0.fail_writes, false);
        after_backoff(&r);
        assert_eq!(
            r.generation().unwrap(),
            Some(1),
            "the landed write moved the counter"
        );
        assert_eq!(f.stored(), [("sip:u1@x".to_string(), "M".to_string())]);
        let c = r.take_counts();
        // The retry that failed is no caller's failure: not counted.
        assert_eq!((c.errors, c.learned, c.dropped), (0, 1, 0));
        assert_eq!(r.queued(), 0);
        assert!(!r.in_outage());
        assert_eq!(
            lines(pr_log_level::Info, "1 queued write(s) written"),
            info + 1
        );
        assert_eq!(
            f.0.mark.load(Ordering::SeqCst),
            0,
            "the shared mark is cleared"
        );
        // A new write goes straight in.
        assert_eq!(
            r.write_or_queue(Write::Put(learned("sip:u2@x", "M"))),
            Written::Stored
        );
    }

    #[test]
    fn the_queue_is_bounded_and_counts_what_it_drops() {
        let f = Flaky::new("tag-bounded");
        let r = Resilient::fixed(Box::new(f.clone()));
        f.set(&f.0.fail_writes, true);
        for k in 0..MAX_QUEUED + 5 {
            let w = Write::Put(learned(&format!("sip:u{k}@x"), "M"));
            assert_eq!(r.write_or_queue(w), Written::Queued);
        }
        assert_eq!(r.queued(), MAX_QUEUED);
        let c = r.take_counts();
        assert_eq!(c.dropped, 5);
        assert_eq!(c.errors, (MAX_QUEUED + 5) as u32);
        // The oldest went: u0..u4.
        f.set(&f.0.fail_writes, false);
        after_backoff(&r);
        r.state().timeout = Duration::from_secs(60);
        r.generation().unwrap();
        let stored = f.stored();
        assert_eq!(stored.len(), MAX_QUEUED);
        assert!(!stored.iter().any(|(a, _)| a == "sip:u4@x"));
        assert!(stored.iter().any(|(a, _)| a == "sip:u5@x"));
        assert_eq!(r.take_counts().learned, MAX_QUEUED as u32);
    }

    #[test]
    fn queued_writes_land_in_order_and_never_over_a_newer_one() {
        let f = Flaky::new("tag-order");
        let r = Resilient::fixed(Box::new(f.clone()));
        f.set(&f.0.fail_writes, true);
        r.write_or_queue(Write::Put(learned("sip:a@x", "M")));
        r.write_or_queue(Write::Put(learned("sip:b@x", "M")));
        // A later forget of a replaces its queued learn.
        r.write_or_queue(Write::Remove {
            aor: "sip:a@x".into(),
            service: Some("M".into()),
        });
        assert_eq!(r.queued(), 2);
        // The operator removes b while the store works again but the
        // back-off still runs: the queued learn of b is dropped, it is
        // older.
        f.set(&f.0.fail_writes, false);
        assert_eq!(r.remove("sip:b@x", None).unwrap(), 0);
        after_backoff(&r);
        r.generation().unwrap();
        assert!(f.stored().is_empty(), "{:?}", f.stored());
        assert_eq!(r.queued(), 0);
        assert_eq!(r.take_counts().learned, 0);
        // While a write waits, a new one goes behind it, even if the
        // store works: not before the back-off has passed.
        f.set(&f.0.fail_writes, true);
        r.write_or_queue(Write::Put(learned("sip:c@x", "M")));
        f.set(&f.0.fail_writes, false);
        assert_eq!(
            r.write_or_queue(Write::Put(learned("sip:d@x", "M"))),
            Written::Queued
        );
        assert!(f.stored().is_empty());
        after_backoff(&r);
        assert_eq!(
            r.write_or_queue(Write::Put(learned("sip:e@x", "M"))),
            Written::Stored
        );
        assert_eq!(f.stored().len(), 3);
    }

    #[test]
    fn input_errors_are_refused_not_queued_and_no_outage() {
        let f = Flaky::new("tag-input");
        let r = Resilient::fixed(Box::new(f.clone()));
        let mut bad = learned("sip:u1@x", "M");
        bad.targets.clear();
        assert!(matches!(
            r.write_or_queue(Write::Put(bad)),
            Written::Refused(StoreError::Invalid(_))
        ));
        assert_eq!(r.queued(), 0);
        assert!(!r.in_outage());
        assert!(r.take_counts().is_empty());
    }

    #[test]
    fn failing_reads_count_each_log_once_and_heal_by_a_read() {
        let f = Flaky::new("tag-reads");
        let r = Resilient::fixed(Box::new(f.clone()));
        f.set(&f.0.fail_reads, true);
        for _ in 0..10 {
            assert!(r.get("sip:u1@x", "M", 5).is_err());
        }
        assert_eq!(r.take_counts().errors, 10);
        assert_eq!(lines(pr_log_level::Error, "tag-reads"), 1);
        f.set(&f.0.fail_reads, false);
        assert_eq!(r.get("sip:u1@x", "M", 5).unwrap(), None);
        assert!(!r.in_outage());
        // A second outage is a second line.
        f.set(&f.0.fail_reads, true);
        assert!(r.count(5).is_err());
        assert_eq!(lines(pr_log_level::Error, "tag-reads"), 2);
    }

    #[test]
    fn another_process_logged_the_outage_so_this_one_stays_quiet() {
        let f = Flaky::new("tag-shared-mark");
        let r = Resilient::fixed(Box::new(f.clone()));
        f.0.mark.store(12345, Ordering::SeqCst);
        f.set(&f.0.fail_writes, true);
        r.write_or_queue(Write::Put(learned("sip:u1@x", "M")));
        assert_eq!(lines(pr_log_level::Error, "tag-shared-mark"), 0);
        assert_eq!(r.take_counts().errors, 1);
    }

    #[test]
    fn a_store_whose_file_went_is_opened_again_and_the_cache_starts_over() {
        let _serial = serial();
        let first = Flaky::new("tag-moved");
        let second = Flaky::new("tag-moved-new");
        let third = Flaky::new("tag-moved-third");
        let handed = Arc::new(AtomicU32::new(0));
        let (a, b, c, n) = (first.clone(), second.clone(), third.clone(), handed.clone());
        let opener: Opener = Box::new(move || {
            let store: Box<dyn Store> = match n.fetch_add(1, Ordering::SeqCst) {
                0 => Box::new(a.clone()),
                1 => return Err(StoreError::Unavailable),
                2 => Box::new(b.clone()),
                _ => Box::new(c.clone()),
            };
            Ok(store)
        });
        let info = lines(pr_log_level::Info, "1 queued write(s) written");
        let r = Resilient::open(opener, DEFAULT_TIMEOUT).unwrap();
        let g0 = r.generation().unwrap();
        // The file went: the next check drops the handle; opening again
        // fails once (a lookup meanwhile gets an error, counted).
        first.set(&first.0.moved, true);
        assert_eq!(r.check(), Err(StoreError::Unavailable));
        assert!(matches!(
            r.get("sip:u1@x", "M", 5),
            Err(StoreError::Unavailable)
        ));
        assert_eq!(r.generation().unwrap(), None, "no cache without a store");
        assert_eq!(
            r.write_or_queue(Write::Put(learned("sip:u1@x", "M"))),
            Written::Queued
        );
        assert_eq!(lines(pr_log_level::Error, "(reopen: "), 1);
        assert!(
            first.0.mark.load(Ordering::SeqCst) > 0,
            "on the old store's mark"
        );
        // Opened again after the back-off: the queue lands in the new
        // store, and the counter is not the old one.
        after_backoff(&r);
        let g1 = r.generation().unwrap();
        assert!(g1.is_some() && g1 != g0, "{g0:?} {g1:?}");
        assert_eq!(second.stored().len(), 1);
        assert!(first.stored().is_empty());
        assert!(!r.in_outage());
        // Counted: the read and the write (not the check, nor the
        // reopening, which no caller asked for).
        let c = r.take_counts();
        assert_eq!((c.errors, c.learned), (2, 1));
        assert_eq!(first.0.mark.load(Ordering::SeqCst), 0, "cleared");
        assert_eq!(
            lines(pr_log_level::Info, "1 queued write(s) written"),
            info + 1
        );

        // Gone again, and opened again at once: one warning, no outage.
        second.set(&second.0.moved, true);
        assert!(r.check().is_ok());
        assert!(!r.in_outage());
        assert_eq!(
            lines(pr_log_level::Warn, "tag-moved-new: opened it again"),
            1
        );
        assert!(r.take_counts().is_empty());
    }
}
