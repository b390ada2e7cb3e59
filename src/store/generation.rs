//! The SQLite store's change counter ([`super::Store::generation`]): one
//! 64-bit number, shared by every process that uses the same store file,
//! that each write to the store increments after it commits.
//!
//! Why: every `push_lookup()` asks the store for the request's (AOR,
//! service), and the answer almost never changes (most AORs have no entry
//! at all). A read from SQLite costs a read transaction — two `fcntl` locks
//! on the WAL index, a B-tree descent, about 4 µs —, which profiles showed
//! to be the largest cost the module adds to a request. With this counter a
//! process keeps the answers it read ([`super::cache`]) and reads SQLite
//! again only after another write: checking the counter is one atomic load.
//!
//! The counter lives in a small file next to the store, `<store>-gen`,
//! mapped `MAP_SHARED` by each process that opens the store (as SQLite maps
//! its own `-shm` file): an increment by a Kamailio worker, the RPC process
//! or another program using the same store is seen by every other process at
//! once. The mapping survives `fork()` and stays shared.
//!
//! Limits, and why they are safe:
//! - a writer that dies between its commit and the increment leaves the
//!   others with an answer one write old: the cache also expires by age
//!   ([`super::cache::CACHE_MAX_AGE`]), so it is not kept for long;
//! - a write made without this code (the `sqlite3` shell) is not counted:
//!   it is seen within the same age bound;
//! - if the file cannot be created or mapped, the store works without a
//!   cache (every read goes to SQLite), and says so once in the log.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes mapped: one page (the counter uses the first 8).
const MAP_LEN: usize = 4096;

/// A mapping of the shared counter of one store.
#[derive(Debug)]
pub struct Generation {
    ptr: NonNull<AtomicU64>,
}

// SAFETY: the mapping is process-wide memory accessed only through an
// AtomicU64; nothing in it is tied to a thread.
unsafe impl Send for Generation {}
// SAFETY: as above; every access is atomic.
unsafe impl Sync for Generation {}

/// The counter file of the store at `store`: `<store>-gen`.
pub fn path_for(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push("-gen");
    PathBuf::from(p)
}

impl Generation {
    /// Maps the counter file of the store at `store`, creating it (zeroed)
    /// if missing. Errors name the file and the system's reason.
    pub fn open(store: &Path) -> Result<Generation, String> {
        let path = path_for(store);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let len = file
            .metadata()
            .map_err(|e| format!("cannot stat {}: {e}", path.display()))?
            .len();
        if len < MAP_LEN as u64 {
            // Growing a file never loses what another process wrote in it
            // (only its first 8 bytes matter, and set_len keeps them).
            file.set_len(MAP_LEN as u64)
                .map_err(|e| format!("cannot size {}: {e}", path.display()))?;
        }
        // SAFETY: a fresh shared mapping of a file we hold open, of a length
        // the file has; the result is checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MAP_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!(
                "cannot map {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        // The mapping stays valid after the file is closed.
        drop(file);
        // mmap returns page-aligned memory, aligned enough for an AtomicU64.
        let ptr = NonNull::new(p.cast::<AtomicU64>()).ok_or("mmap returned NULL")?;
        Ok(Generation { ptr })
    }

    /// A page shared by this process and every process it forks later
    /// (anonymous, `MAP_SHARED`): a Kamailio node's counter for a store
    /// that has no file (Redis), made in the main process before the fork.
    pub fn anonymous() -> Result<Generation, String> {
        // SAFETY: a fresh anonymous shared mapping; checked against
        // MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MAP_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!(
                "cannot map a shared page: {}",
                std::io::Error::last_os_error()
            ));
        }
        // Zeroed by the system; page-aligned.
        let ptr = NonNull::new(p.cast::<AtomicU64>()).ok_or("mmap returned NULL")?;
        Ok(Generation { ptr })
    }

    /// The fourth word: 1 while a subscriber process keeps this node's
    /// counter in step with the store's changes (Redis), else 0.
    pub fn subscribed(&self) -> &AtomicU64 {
        // SAFETY: as `outage_mark`: the fourth u64 of a page-sized,
        // page-aligned mapping, only ever accessed atomically.
        unsafe { &*self.ptr.as_ptr().add(3) }
    }

    fn counter(&self) -> &AtomicU64 {
        // SAFETY: `ptr` is a live, aligned mapping of at least 8 bytes
        // until `drop`, and only ever accessed atomically.
        unsafe { self.ptr.as_ref() }
    }

    /// The current value. Read it *before* reading the store: an answer
    /// read after a write committed is then never kept under the value
    /// from before it.
    pub fn current(&self) -> u64 {
        self.counter().load(Ordering::Acquire)
    }

    /// The second word of the file: the host's "an outage of this store
    /// is logged" mark ([`super::fault`]): 0, or the Unix time the process
    /// that logged it saw the outage begin.
    pub fn outage_mark(&self) -> &AtomicU64 {
        // SAFETY: the mapping is MAP_LEN (4096) bytes, page-aligned: the
        // second u64 is in it and aligned; only ever accessed atomically.
        unsafe { &*self.ptr.as_ptr().add(1) }
    }

    /// The third word of the file: the inode of the store file a process
    /// last announced as opened again ([`super::Store::announce`]).
    pub fn announced(&self) -> &AtomicU64 {
        // SAFETY: as `outage_mark`: the third u64 of a page-sized,
        // page-aligned mapping, only ever accessed atomically.
        unsafe { &*self.ptr.as_ptr().add(2) }
    }

    /// Counts a write; call it after the write committed.
    pub fn bump(&self) {
        self.counter().fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, unmapped once. Unmapping in a
        // forked child only removes the child's view of it.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), MAP_LEN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_see_each_others_bumps() {
        let dir = std::env::temp_dir().join(format!("pr-gen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = dir.join("store.sqlite");
        let a = Generation::open(&store).unwrap();
        let b = Generation::open(&store).unwrap();
        let start = a.current();
        b.bump();
        assert_eq!(a.current(), start + 1);
        a.bump();
        assert_eq!(b.current(), start + 2);
        assert!(path_for(&store).ends_with("store.sqlite-gen"));
        drop((a, b));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unusable_place_is_an_error_not_a_crash() {
        let e = Generation::open(Path::new("/proc/no-such-dir/store.sqlite")).unwrap_err();
        assert!(e.contains("store.sqlite-gen"), "{e}");
    }
}
