//! The module's statistics (SPEC §4, `kamcmd stats.get_statistics
//! push_redirect:`), declared once: the engine counts into [`Counters`], the
//! C ABI hands them over as an array indexed by [`Stat`] (`pr_stat` in C),
//! and the Kamailio module registers, updates and prints them by looping
//! over `PR_STAT_COUNT` with `pr_stat_name`.

use std::ffi::CStr;

use crate::enums::numbered;

/// Number of statistics (`pr_stat` values are 0 to `PR_STAT_COUNT` - 1).
pub const PR_STAT_COUNT: usize = 9;

/// One statistic. The numbers index the counters handed to C; they are
/// dense, from 0, and never reused.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// 3xx replies whose Contacts were followed.
    RedirectsFollowed = 0,
    /// Rounds that moved on to the next registered terminal(s).
    Failovers = 1,
    /// Forwardings learned from a 301 or a 302 with an expiry.
    ForwardingsLearned = 2,
    /// Stored or provisioned forwardings used.
    ForwardingsApplied = 3,
    /// Targets refused by policy (scheme, domain, sips, self, malformed).
    TargetsRefused = 4,
    /// Targets not followed because already tried, or past `max_depth`.
    LoopsPrevented = 5,
    /// Acceptable Contacts beyond `max_branches`.
    ContactsDropped = 6,
    /// Store operations that did not succeed (a lookup that could not read
    /// the store, a write that was queued or failed).
    StoreErrors = 7,
    /// Queued writes dropped: the per-process queue of writes made while
    /// the store failed was full (`store::fault::MAX_QUEUED`).
    StoreWritesDropped = 8,
}

numbered!(Stat {
    RedirectsFollowed,
    Failovers,
    ForwardingsLearned,
    ForwardingsApplied,
    TargetsRefused,
    LoopsPrevented,
    ContactsDropped,
    StoreErrors,
    StoreWritesDropped,
});

impl Stat {
    /// Its SPEC name, NUL-terminated for Kamailio's `register_stat`.
    pub fn c_name(self) -> &'static CStr {
        match self {
            Stat::RedirectsFollowed => c"redirects_followed",
            Stat::Failovers => c"failovers",
            Stat::ForwardingsLearned => c"forwardings_learned",
            Stat::ForwardingsApplied => c"forwardings_applied",
            Stat::TargetsRefused => c"targets_refused",
            Stat::LoopsPrevented => c"loops_prevented",
            Stat::ContactsDropped => c"contacts_dropped",
            Stat::StoreErrors => c"store_errors",
            Stat::StoreWritesDropped => c"store_writes_dropped",
        }
    }

    /// Its SPEC name.
    pub fn name(self) -> &'static str {
        self.c_name().to_str().unwrap_or("?")
    }
}

/// What one decision adds to each statistic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters(pub [u32; PR_STAT_COUNT]);

impl Counters {
    /// Adds `n` to `stat`.
    pub fn add(&mut self, stat: Stat, n: u32) {
        if let Some(c) = self.0.get_mut(stat as usize) {
            *c = c.saturating_add(n);
        }
    }

    /// Adds one to `stat`.
    pub fn bump(&mut self, stat: Stat) {
        self.add(stat, 1);
    }

    /// Takes `n` from `stat` (not below 0).
    pub fn sub(&mut self, stat: Stat, n: u32) {
        if let Some(c) = self.0.get_mut(stat as usize) {
            *c = c.saturating_sub(n);
        }
    }
}

impl std::ops::Index<Stat> for Counters {
    type Output = u32;
    fn index(&self, stat: Stat) -> &u32 {
        // Stat numbers are 0..PR_STAT_COUNT (tested below).
        self.0.get(stat as usize).unwrap_or(&0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_dense_and_names_are_the_spec_ones() {
        assert_eq!(Stat::ALL.len(), PR_STAT_COUNT);
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert_eq!(Stat::try_from(i as u32), Ok(*s));
        }
        assert_eq!(
            Stat::try_from(PR_STAT_COUNT as u32),
            Err(PR_STAT_COUNT as u32)
        );
        let names: Vec<&str> = Stat::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "redirects_followed",
                "failovers",
                "forwardings_learned",
                "forwardings_applied",
                "targets_refused",
                "loops_prevented",
                "contacts_dropped",
                "store_errors",
                "store_writes_dropped"
            ]
        );
    }

    #[test]
    fn counters_add_by_stat() {
        let mut c = Counters::default();
        c.bump(Stat::Failovers);
        c.add(Stat::ContactsDropped, 3);
        assert_eq!(c[Stat::Failovers], 1);
        assert_eq!(c[Stat::ContactsDropped], 3);
        assert_eq!(c[Stat::RedirectsFollowed], 0);
    }
}
