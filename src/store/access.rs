//! Why the user Kamailio runs as cannot use a store file, and the command
//! that fixes it: the hint added to the start-up error of an unusable
//! `store` (an operator who starts Kamailio as Debian's service does runs it
//! as `kamailio`, not root).
//!
//! It looks at the file system with the effective identity of this process
//! (`faccessat(..., AT_EACCESS)`), which is the identity the workers have
//! when the module checks the store (systemd's `User=`, or the module's
//! check as the `-u`/`-g` user).

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The files the embedded store keeps beside `store`: SQLite's own (WAL
/// mode) and the change counter (`generation::path_for`).
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-gen"];

/// The names of the effective user and group of this process (their numbers
/// when they have no name).
pub fn effective_user() -> (String, String) {
    // SAFETY: geteuid/getegid cannot fail and touch no memory of ours.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    (
        user_name(uid).unwrap_or_else(|| uid.to_string()),
        group_name(gid).unwrap_or_else(|| gid.to_string()),
    )
}

fn user_name(uid: libc::uid_t) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: an all-zero passwd is a valid value for an out-parameter.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to live memory of the stated length;
    // getpwuid_r writes the strings into `buf` and sets `out` to `&pw` or NULL.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || pw.pw_name.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string in `buf`.
    Some(
        unsafe { CStr::from_ptr(pw.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn group_name(gid: libc::gid_t) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: an all-zero group is a valid value for an out-parameter.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in user_name, with getgrgid_r.
    let rc =
        unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || gr.gr_name.is_null() {
        return None;
    }
    // SAFETY: on success gr_name points to a NUL-terminated string in `buf`.
    Some(
        unsafe { CStr::from_ptr(gr.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Whether this process (its effective identity) may do `mode` on `path`.
fn may(path: &Path, mode: libc::c_int) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) == 0 }
}

/// The hint for a store at `location` that could not be opened, for this
/// process' user: `None` when the location is a URL or nothing in the way
/// is a matter of permissions (a damaged file, a newer schema).
pub fn hint(location: &str) -> Option<String> {
    let (user, group) = effective_user();
    hint_for(location, &user, &group, may)
}

/// [`hint`] for a given user and group name, with `may(path, mode)` telling
/// whether that user may do `mode` (`libc::W_OK`...) on `path` (for
/// [`hint`]: `faccessat` with this process' effective identity).
pub fn hint_for(
    location: &str,
    user: &str,
    group: &str,
    may: impl Fn(&Path, libc::c_int) -> bool,
) -> Option<String> {
    if location.is_empty() || location.contains("://") {
        return None;
    }
    let file = Path::new(location);
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let runs_as = format!("Kamailio runs as user '{user}' (group '{group}')");
    let make_dir = format!(
        "as root: install -d -o {user} -g {group} -m 0750 {}",
        dir.display()
    );
    // The nearest folder that exists: the store's own, or where it would be made.
    let mut existing = dir.as_path();
    while !existing.is_dir() {
        match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => existing = p,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    let rwx = libc::W_OK | libc::X_OK;
    if existing != dir {
        if !may(existing, rwx) {
            return Some(format!(
                "{runs_as}, which cannot create the folder {}; {make_dir}",
                dir.display()
            ));
        }
        return None;
    }
    if !may(&dir, rwx) {
        return Some(format!(
            "{runs_as}, which cannot create files in {}; {make_dir}",
            dir.display()
        ));
    }
    let mut locked: Vec<PathBuf> = Vec::new();
    let mut all = vec![file.to_path_buf()];
    for c in COMPANIONS {
        let mut p = file.as_os_str().to_owned();
        p.push(c);
        all.push(PathBuf::from(p));
    }
    for p in all {
        if p.exists() && !may(&p, libc::R_OK | libc::W_OK) {
            locked.push(p);
        }
    }
    if locked.is_empty() {
        return None;
    }
    let names: Vec<String> = locked.iter().map(|p| p.display().to_string()).collect();
    Some(format!(
        "{runs_as}, which cannot write {}; as root: chown {user}:{group} {}",
        names.join(", "),
        names.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pr-access-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A user who may do anything but write to `denied` (and its contents).
    fn all_but(denied: &Path) -> impl Fn(&Path, libc::c_int) -> bool + '_ {
        move |p: &Path, mode: libc::c_int| !(mode & libc::W_OK != 0 && p.starts_with(denied))
    }

    fn s(p: &Path) -> String {
        p.display().to_string()
    }

    #[test]
    fn urls_and_empty_locations_get_no_hint() {
        let no = |_: &Path, _| false;
        assert_eq!(hint_for("redis://h:6379/0", "u", "g", no), None);
        assert_eq!(hint_for("redis+sentinel://h:1/m", "u", "g", no), None);
        assert_eq!(hint_for("", "u", "g", no), None);
    }

    #[test]
    fn a_usable_folder_and_file_get_no_hint() {
        let d = tmp("usable");
        let f = d.join("s.sqlite");
        let yes = |_: &Path, _| true;
        assert_eq!(hint_for(&s(&f), "u", "g", yes), None);
        fs::write(&f, b"").unwrap();
        assert_eq!(hint_for(&s(&f), "u", "g", yes), None);
        assert_eq!(hint_for(&s(&d.join("a/b/s.sqlite")), "u", "g", yes), None);
        // the real check, as whoever runs the tests: their own temp folder
        assert_eq!(hint(&s(&f)), None);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_unwritable_folder_names_the_user_and_install_d() {
        let d = tmp("ro-dir");
        let f = d.join("s.sqlite");
        let h = hint_for(&s(&f), "kam", "kamg", all_but(&d)).expect("hint");
        assert_eq!(
            h,
            format!(
                "Kamailio runs as user 'kam' (group 'kamg'), which cannot create files in {d}; \
                 as root: install -d -o kam -g kamg -m 0750 {d}",
                d = d.display()
            )
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_missing_folder_under_an_unwritable_one_names_install_d() {
        let d = tmp("ro-parent");
        let sub = d.join("lib/kamailio");
        let f = sub.join("s.sqlite");
        let h = hint_for(&s(&f), "kam", "kamg", all_but(&d)).expect("hint");
        assert_eq!(
            h,
            format!(
                "Kamailio runs as user 'kam' (group 'kamg'), which cannot create the folder {sub}; \
                 as root: install -d -o kam -g kamg -m 0750 {sub}",
                sub = sub.display()
            )
        );
        // a missing folder under a writable one: nothing in the way
        assert_eq!(hint_for(&s(&f), "kam", "kamg", |_: &Path, _| true), None);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn unwritable_files_are_named_with_chown() {
        let d = tmp("ro-file");
        let f = d.join("s.sqlite");
        let g = d.join("s.sqlite-gen");
        fs::write(&f, b"").unwrap();
        fs::write(&g, b"").unwrap();
        // the folder is writable, the files (and only they) are not
        let files_denied = |p: &Path, mode: libc::c_int| {
            !(mode & libc::W_OK != 0 && p.to_string_lossy().contains("s.sqlite"))
        };
        let h = hint_for(&s(&f), "kam", "kamg", files_denied).expect("hint");
        assert_eq!(
            h,
            format!(
                "Kamailio runs as user 'kam' (group 'kamg'), which cannot write {f}, {g}; \
                 as root: chown kam:kamg {f} {g}",
                f = f.display(),
                g = g.display()
            )
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_bare_file_name_is_in_the_current_folder() {
        let h = hint_for("s.sqlite", "kam", "kamg", all_but(Path::new("."))).expect("hint");
        assert!(h.ends_with("install -d -o kam -g kamg -m 0750 ."), "{h}");
    }

    #[test]
    fn the_effective_user_has_a_name() {
        let (u, g) = effective_user();
        assert!(!u.is_empty() && !g.is_empty());
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(u, "root");
        }
    }
}
