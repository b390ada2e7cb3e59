//! The wall clock in whole seconds, read once or twice per call on the
//! request path (the engine's `now`, the store's once-a-second health
//! check): `clock_gettime(CLOCK_REALTIME)` directly, the same clock as
//! `SystemTime::now()` without its `Duration`/`Result` arithmetic (about
//! a hundred instructions less per read under callgrind).

/// Unix time in seconds (0 if the clock cannot be read, which Linux's
/// `CLOCK_REALTIME` never refuses).
pub(crate) fn unix_seconds() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    if rc == 0 {
        // time_t: 64 bits here, 32 on some targets.
        #[allow(clippy::useless_conversion)]
        i64::from(ts.tv_sec)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_same_clock_as_system_time() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let now = unix_seconds();
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(before <= now && now <= after, "{before} {now} {after}");
    }
}
