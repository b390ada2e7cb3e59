//! This process' read cache, in front of any [`Store`] backend.
//!
//! Why: every `push_lookup()` asks the store for the request's (AOR,
//! service), and the answer almost never changes (most AORs have no entry
//! at all), while a read of the store is the largest cost the module adds
//! to a request (SQLite: a read transaction, about 4 µs; see
//! [`super::generation`]).
//!
//! How: [`Cached`] reads the backend's change counter
//! ([`Store::generation`]) before each lookup, and keeps the answers it
//! read — an entry or none — while the counter has not moved, for at most
//! [`CACHE_MAX_AGE`] seconds and [`CACHE_MAX_KEYS`] answers. A backend that
//! has no counter is read every time. Writes go to the backend, which moves
//! its counter for every process, and empty this process' cache at once.
//! The cache knows nothing of the backend but the [`Store`] trait.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::fault::{FaultCounts, Resilient, Write, Written};
use super::{check_key, Entry, Store, StoreError};
use crate::forwarding::Forwarding;

/// How long a cached answer may be used even when the change counter has
/// not moved, in seconds: the bound on how late a write the counter missed
/// is seen (SQLite: a writer that died between commit and count, the
/// `sqlite3` shell).
pub const CACHE_MAX_AGE: i64 = 10;
/// Most (AOR, service) answers one process caches; the cache starts again
/// empty when it is full.
pub const CACHE_MAX_KEYS: usize = 4096;
/// Most services cached for one AOR (the list is searched in order).
const CACHE_MAX_SERVICES: usize = 16;

/// A store behind this process' read cache: what the module holds
/// (`pr_engine_open_store`), made by [`super::open`] or [`Cached::new`].
///
/// It is a [`Store`] itself: `get` answers from the cache when it can,
/// the other methods go to the backend. Like its backend, it is used by the
/// process that opened it, and may be shared between that process' threads
/// (the cache is behind a lock).
pub struct Cached {
    /// The backend, behind this process' fault handling.
    backend: Resilient,
    /// What `get` read, valid while the backend's counter has not moved.
    cache: Mutex<ReadCache>,
}

/// A stored entry and its forwarding, as [`Cached::get_shared`] hands
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

/// The answers `get` read from the backend at one value of its change
/// counter.
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
    /// Drops every answer (after a write through this process).
    fn forget(&mut self) {
        self.answers.clear();
        self.count = 0;
    }
}

impl Cached {
    /// `backend` behind the fault handling (never reopened) and an empty
    /// read cache.
    pub fn new(backend: Box<dyn Store>) -> Cached {
        Cached::with(Resilient::fixed(backend))
    }

    /// A backend with its fault handling behind an empty read cache.
    pub fn with(backend: Resilient) -> Cached {
        Cached {
            backend,
            cache: Mutex::new(ReadCache::default()),
        }
    }

    /// The backend, to read it past the cache (always one read of the
    /// store: what a first lookup, or one after a write, costs).
    pub fn backend(&self) -> &dyn Store {
        &self.backend
    }

    /// The fault handling: its queue and counts.
    pub fn faults(&self) -> &Resilient {
        &self.backend
    }

    /// A decision's write ([`Resilient::write_or_queue`]): made now, or
    /// queued while the store fails.
    pub fn write_or_queue(&self, w: Write) -> Written {
        let r = self.backend.write_or_queue(w);
        if r == Written::Stored {
            self.cache().forget();
        }
        r
    }

    /// The fault counts gathered since the last call
    /// ([`Resilient::take_counts`]).
    pub fn take_counts(&self) -> FaultCounts {
        self.backend.take_counts()
    }

    /// Whether reads are cached now: the backend has a change counter
    /// (the SQLite one has none when its counter file cannot be mapped),
    /// and can be used in this process.
    pub fn has_read_cache(&self) -> bool {
        matches!(self.backend.generation(), Ok(Some(_)))
    }

    fn cache(&self) -> MutexGuard<'_, ReadCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`Store::get`], shared with the read cache: a cached answer is
    /// handed out without a copy.
    pub fn get_shared(
        &self,
        aor: &str,
        service: &str,
        now: i64,
    ) -> Result<Option<SharedEntry>, StoreError> {
        // First, before the store is read (see `Store::generation`); a
        // backend that cannot be used in this process (after a fork) fails
        // here, before any cached answer is handed out.
        let generation = self.backend.generation()?;
        if let Some(g) = generation {
            // Only keys that passed `check_key` below are ever cached.
            if let Some(answer) = self.cache().get(g, now, aor, service) {
                return Ok(answer);
            }
        }
        check_key("aor", aor)?;
        check_key("service", service)?;
        let answer = self.backend.get(aor, service, now)?.map(SharedEntry::new);
        if let Some(g) = generation {
            self.cache().put(g, aor, service, &answer);
        }
        Ok(answer)
    }
}

impl Store for Cached {
    fn get(&self, aor: &str, service: &str, now: i64) -> Result<Option<Entry>, StoreError> {
        Ok(self
            .get_shared(aor, service, now)?
            .map(|s| Entry::clone(&s.entry)))
    }

    fn put(&self, entry: &Entry) -> Result<(), StoreError> {
        self.backend.put(entry)?;
        self.cache().forget();
        Ok(())
    }

    fn remove(&self, aor: &str, service: Option<&str>) -> Result<usize, StoreError> {
        let n = self.backend.remove(aor, service)?;
        if n > 0 {
            self.cache().forget();
        }
        Ok(n)
    }

    fn list(&self, aor: Option<&str>, now: i64) -> Result<Vec<Entry>, StoreError> {
        self.backend.list(aor, now)
    }

    fn sweep(&self, now: i64) -> Result<usize, StoreError> {
        let n = self.backend.sweep(now)?;
        if n > 0 {
            self.cache().forget();
        }
        Ok(n)
    }

    fn count(&self, now: i64) -> Result<usize, StoreError> {
        self.backend.count(now)
    }

    fn generation(&self) -> Result<Option<u64>, StoreError> {
        self.backend.generation()
    }
}

impl fmt::Debug for Cached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached")
            .field("answers", &self.cache().count)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forwarding::{ForwardTarget, ForwardingKind};

    fn cached(aor: &str, service: &str, expires_at: Option<i64>) -> Option<SharedEntry> {
        Some(SharedEntry::new(Entry {
            aor: aor.into(),
            service: service.into(),
            kind: ForwardingKind::Permanent,
            targets: vec![ForwardTarget {
                uri: "sip:t2@127.0.0.1:5072".into(),
                q: None,
                instance: None,
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
}
