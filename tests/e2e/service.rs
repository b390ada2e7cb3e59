//! Kamailio started the way Debian's systemd unit starts it: the unit's own
//! ExecStart (read from the installed kamailio.service at test time, with
//! its Environment= and /etc/default/kamailio: `-P pidfile -f CFGFILE -m 64
//! -M 8`, daemonized, Type=forking), as its User=/Group= (`kamailio`, taken
//! with setpriv as systemd takes it: real and effective ids and the user's
//! groups), with `cfg-examples/push-redirect.cfg` as CFGFILE and the store
//! at its default path in the folder `make install` makes
//! (scripts/install-store-dir.sh). F1, F6, a restart (SIGTERM to the
//! process group, as systemd stops the unit), F6 again.
//!
//! Differences from systemd, each because of the test machine: the unit's
//! RuntimeDirectory (/run/kamailio, kamailio 0770) is a folder of the case
//! made with the same owner and mode, and ExecStart's paths under
//! /run/kamailio point there (no clash with a Kamailio service of the
//! machine); CFGFILE includes the example after defining its port, ctl
//! socket and the module under test (what an operator changes in
//! /etc/kamailio). If the default store path already holds a store (an
//! operator's), it is left alone and the store goes in a folder of the case
//! made by the same script.
//!
//! Runs only as root, with Debian's kamailio package (its unit and user) and
//! with that package's binary under test (`make test-versions` runs a source
//! build of another version, which has neither): it says so and returns
//! otherwise.

use std::collections::BTreeMap;
use std::fs;
use std::net::UdpSocket;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

const N: u32 = 50;
const U2: &str = "sip:u2@example.com";
const DEFAULT_STORE: &str = "/var/lib/kamailio/push_redirect.sqlite";
const UNIT_PATHS: [&str; 2] = [
    "/lib/systemd/system/kamailio.service",
    "/usr/lib/systemd/system/kamailio.service",
];
const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
    fn geteuid() -> u32;
}

/// What the unit says about starting Kamailio.
struct Unit {
    path: PathBuf,
    /// ExecStart, split, with the environment expanded
    exec: Vec<String>,
    user: String,
    group: String,
    pidfile: String,
    runtime_dir: Option<String>,
    runtime_mode: u32,
}

/// `K=V` assignments of one Environment= value ('K=V' 'K2=V2' or K=V ...).
fn assignments(v: &str, env: &mut BTreeMap<String, String>) {
    let mut rest = v.trim();
    while !rest.is_empty() {
        let (item, tail) = match rest.chars().next() {
            Some(q @ ('\'' | '"')) => {
                let end = rest[1..].find(q).map_or(rest.len(), |i| i + 1);
                (&rest[1..end], rest.get(end + 1..).unwrap_or(""))
            }
            _ => {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        if let Some((k, val)) = item.split_once('=') {
            env.insert(k.trim().to_string(), val.trim_matches('"').to_string());
        }
        rest = tail.trim_start();
    }
}

/// `$VAR` and `${VAR}` of `word` from `env`.
fn expand(word: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(b) = after.strip_prefix('{') {
            let end = b.find('}').unwrap_or(b.len());
            (&b[..end], b.get(end + 1..).unwrap_or(""))
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.push_str(env.get(name).map(String::as_str).unwrap_or(""));
        rest = tail;
    }
    out.push_str(rest);
    out
}

fn read_unit() -> Option<Unit> {
    let path = UNIT_PATHS.iter().map(PathBuf::from).find(|p| p.is_file())?;
    let text = fs::read_to_string(&path).ok()?;
    let mut env = BTreeMap::new();
    let mut exec = None;
    let (mut user, mut group, mut pidfile) = (None, None, None);
    let (mut runtime_dir, mut runtime_mode) = (None, 0o755);
    for line in text.lines().map(str::trim) {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k.trim() {
            "Environment" => assignments(v, &mut env),
            "EnvironmentFile" => {
                // "-" in front: the file may be missing; a glob is not
                // followed (Debian's unit has /etc/default/kamailio.d/*)
                let f = v.trim().trim_start_matches('-');
                if !f.contains('*') {
                    if let Ok(t) = fs::read_to_string(f) {
                        for l in t.lines().map(str::trim) {
                            if !l.starts_with('#') && l.contains('=') {
                                assignments(l, &mut env);
                            }
                        }
                    }
                }
            }
            "ExecStart" => exec = Some(v.trim().to_string()),
            "User" => user = Some(v.trim().to_string()),
            "Group" => group = Some(v.trim().to_string()),
            "PIDFile" => pidfile = Some(v.trim().to_string()),
            "RuntimeDirectory" => runtime_dir = Some(v.trim().to_string()),
            "RuntimeDirectoryMode" => {
                runtime_mode = u32::from_str_radix(v.trim(), 8).unwrap_or(0o755)
            }
            _ => {}
        }
    }
    let exec = exec?;
    Some(Unit {
        exec: exec.split_whitespace().map(|w| expand(w, &env)).collect(),
        user: user?,
        group: group.unwrap_or_else(|| "kamailio".into()),
        pidfile: pidfile?,
        runtime_dir,
        runtime_mode,
        path,
    })
}

/// The numeric id of a user (`id -u`) or of its group (`id -g`).
fn id_of(flag: &str, name: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, name]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The non-zombie processes of process group `pgid`, with their real and
/// effective uid.
fn group_members(pgid: i32) -> Vec<(i32, u32, u32)> {
    group_pids(pgid)
        .into_iter()
        .filter_map(|pid| {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let uids: Vec<u32> = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (uids.len() >= 2).then(|| (pid, uids[0], uids[1]))
        })
        .collect()
}

/// The process group of `pid`.
fn pgid_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Kamailio as the unit runs it; killed (its whole process group) on Drop.
struct Service {
    dir: PathBuf,
    unit_user: String,
    unit_group: String,
    /// the ExecStart command line, paths under /run/kamailio moved to `run`
    exec: Vec<String>,
    pidfile: PathBuf,
    /// the daemon's process group (its main process is in it)
    pid: Option<i32>,
    runs: usize,
    how: How,
    /// its SIP port on 127.0.0.1 (UDP)
    port: u16,
}

/// How the service drops root.
#[derive(Clone, Copy, PartialEq)]
enum How {
    /// systemd's User=/Group=: the process is the user's from the exec on
    Unit,
    /// Debian's init script (/etc/init.d/kamailio, where systemd does not
    /// run): started as root with `-u USER -g GROUP`, so Kamailio drops root
    /// itself, after its modules' mod_init()
    InitScript,
}

impl Service {
    /// The command that starts it, with `extra` arguments.
    fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = match self.how {
            How::Unit => {
                // real and effective ids and the user's supplementary
                // groups, before the exec, as systemd sets them
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={}", self.unit_user))
                    .arg(format!("--regid={}", self.unit_group))
                    .arg("--init-groups")
                    .arg("--")
                    .args(&self.exec);
                c
            }
            How::InitScript => {
                let mut c = Command::new(&self.exec[0]);
                c.args(&self.exec[1..])
                    .args(["-u", &self.unit_user, "-g", &self.unit_group]);
                c
            }
        };
        cmd.args(extra).current_dir("/");
        cmd
    }

    fn start(&mut self) {
        self.runs += 1;
        let _ = fs::remove_file(&self.pidfile);
        let cmd = self.command(&[]);
        println!("[e2e service] start {}: {cmd:?}", self.runs);
        let (st, out, err) = run_bounded(
            cmd,
            &self.dir,
            &format!("start.{}", self.runs),
            Duration::from_secs(30),
        );
        if !st.is_some_and(|s| s.success()) {
            panic!(
                "[e2e service] ExecStart failed ({st:?}): {}{}\n{}",
                out.trim(),
                err.trim(),
                self.diagnose()
            );
        }
        // Type=forking: the started process has exited, the daemon wrote
        // its PID (PIDFile=); read again until it names a live process (the
        // file may be read while it is being written). Its process group is
        // the daemon's own (it called setsid() in its first child, which
        // then forked the main process): systemd's control group holds the
        // same processes.
        let t0 = Instant::now();
        let (pid, pgid) = loop {
            let found = fs::read_to_string(&self.pidfile)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
                .and_then(|p| pgid_of(p).map(|g| (p, g)))
                .filter(|&(p, g)| group_members(g).iter().any(|m| m.0 == p));
            if let Some(f) = found {
                break f;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no live kamailio named in {}",
                self.pidfile.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        println!("[e2e service] kamailio main process {pid}, process group {pgid}");
        self.pid = Some(pgid);
        // up, as an operator's next step finds it: it answers SIP
        self.wait_answers();
    }

    /// Waits (10 s at most) until it answers an OPTIONS with Max-Forwards
    /// 0 (the example cfg: 483).
    fn wait_answers(&self) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let t0 = Instant::now();
        for n in 1.. {
            if options_probe_answered(&sock, self.port, n) {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "kamailio on port {} does not answer SIP",
                self.port
            );
        }
    }

    /// The same command in the foreground with its log on stderr (-DD -E),
    /// for a failure's message (the daemon logs to syslog).
    fn diagnose(&self) -> String {
        let (_, out, err) = self.foreground(Duration::from_secs(5));
        format!("--- the same in the foreground (-DD -E) ---\n{out}{err}")
    }

    /// The same command in the foreground (-DD -E), for at most `limit`:
    /// its exit status (None: still running, killed) and output.
    fn foreground(&self, limit: Duration) -> (Option<std::process::ExitStatus>, String, String) {
        run_bounded(self.command(&["-DD", "-E"]), &self.dir, "foreground", limit)
    }

    /// systemd's stop: SIGTERM to every process of the unit, then waits for
    /// them to exit (SIGKILL after 10 s, and the test fails).
    fn stop(&mut self) {
        let Some(pid) = self.pid.take() else {
            return;
        };
        // SAFETY: kill() only sends a signal, to the group the daemon made
        // (checked in start()).
        unsafe { kill(-pid, SIGTERM) };
        let t0 = Instant::now();
        while !group_members(pid).is_empty() {
            if t0.elapsed() > Duration::from_secs(10) {
                let left: Vec<String> = group_members(pid)
                    .iter()
                    .map(|m| fs::read_to_string(format!("/proc/{}/stat", m.0)).unwrap_or_default())
                    .collect();
                // SAFETY: as above.
                unsafe { kill(-pid, SIGKILL) };
                panic!(
                    "[e2e service] kamailio (group {pid}) did not stop within 10 s of SIGTERM; \
                     left: {left:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "[e2e service] stopped (SIGTERM to the group) in {:.2}s",
            t0.elapsed().as_secs_f64()
        );
    }

    fn ctl(&self) -> String {
        format!("unix:{}", self.dir.join("run/kamailio_ctl").display())
    }

    fn statistics(&self) -> BTreeMap<String, i64> {
        let mut cmd = Command::new(kamcmd_bin());
        cmd.arg("-s")
            .arg(self.ctl())
            .args(["stats.get_statistics", "push_redirect:"]);
        let (st, out, err) = run_bounded(cmd, &self.dir, "kamcmd", Duration::from_secs(10));
        assert!(
            st.is_some_and(|s| s.success()),
            "kamcmd: {st:?} {out} {err}"
        );
        out.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                let k = k.trim();
                Some((
                    k.strip_prefix("push_redirect:").unwrap_or(k).to_string(),
                    v.trim().parse().ok()?,
                ))
            })
            .collect()
    }

    fn stat(&self, name: &str) -> i64 {
        self.statistics().get(name).copied().unwrap_or(-1)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            // SAFETY: kill() only sends a signal, to the daemon's group.
            unsafe { kill(-pid, SIGKILL) };
        }
    }
}

/// The store's files: removed on Drop when the case made them at the
/// default path.
struct StoreFiles(Vec<PathBuf>, bool);

impl Drop for StoreFiles {
    fn drop(&mut self) {
        if self.1 {
            for f in &self.0 {
                let _ = fs::remove_file(f);
            }
        }
    }
}

fn store_files(store: &Path) -> Vec<PathBuf> {
    let mut v = vec![store.to_path_buf()];
    for s in ["-wal", "-shm", "-gen"] {
        let mut p = store.as_os_str().to_owned();
        p.push(s);
        v.push(PathBuf::from(p));
    }
    v
}

/// scripts/install-store-dir.sh [dir], as `make install` runs it.
fn install_store_dir(case: &Case, dir: Option<&Path>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-store-dir.sh");
    let mut cmd = Command::new(script);
    if let Some(d) = dir {
        cmd.arg(d);
    }
    let (st, out, err) = run_bounded(cmd, &case.dir, "install-store-dir", Duration::from_secs(10));
    print!("[e2e service] install-store-dir.sh: {out}");
    assert!(st.is_some_and(|s| s.success()), "{out}{err}");
}

/// The installed unit, if this machine can run the service cases; if it
/// cannot, says why (and the case returns).
fn usable_unit() -> Option<Unit> {
    let unit = read_unit();
    if let Some(why) = unusable(&unit) {
        println!("[e2e service] not run on this machine: {why}");
        return None;
    }
    unit
}

/// Why this machine cannot run the case, if it cannot.
fn unusable(unit: &Option<Unit>) -> Option<String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { geteuid() } != 0 {
        return Some("not root (the unit's user is taken with setpriv)".into());
    }
    let Some(u) = unit else {
        return Some(format!("no kamailio.service in {UNIT_PATHS:?}"));
    };
    if id_of("-u", &u.user).is_none() {
        return Some(format!("no user {}", u.user));
    }
    let bin = fs::canonicalize(kamailio_bin()).ok();
    let unit_bin = u.exec.first().and_then(|b| fs::canonicalize(b).ok());
    if bin.is_none() || bin != unit_bin {
        return Some(format!(
            "the Kamailio under test ({}) is not the unit's ({:?})",
            kamailio_bin().display(),
            u.exec.first()
        ));
    }
    None
}

/// A case's Kamailio, started as the installed unit says (`how`), with
/// `cfg-examples/push-redirect.cfg` as CFGFILE and the store at `store`
/// (None: the cfg's default path). Returns it (not started) and its address.
fn service(case: &Case, unit: &Unit, how: How, store: Option<&Path>) -> (Service, String) {
    let uid = id_of("-u", &unit.user).unwrap();
    let gid = id_of("-g", &unit.user).unwrap();
    println!(
        "[e2e service] unit {}: User={} Group={} PIDFile={} ExecStart={}",
        unit.path.display(),
        unit.user,
        unit.group,
        unit.pidfile,
        unit.exec.join(" ")
    );
    for m in ["-m", "-M", "-P", "-f"] {
        assert!(unit.exec.iter().any(|a| a == m), "ExecStart has {m}");
    }

    // the unit's RuntimeDirectory, in the case's folder
    let run = case.dir.join("run");
    fs::create_dir_all(&run).unwrap();
    std::os::unix::fs::chown(&run, Some(uid), Some(gid)).unwrap();
    fs::set_permissions(&run, fs::Permissions::from_mode(unit.runtime_mode)).unwrap();
    let run_prefix = format!("/run/{}", unit.runtime_dir.as_deref().unwrap_or("kamailio"));
    let moved = |p: &str| match p.strip_prefix(&run_prefix) {
        Some(rest) => format!("{}{rest}", run.display()),
        None => p.to_string(),
    };

    // CFGFILE: the example, on this case's port, with the module under test
    // (both copied where the unit's user can read them)
    let etc = case.dir.join("etc");
    fs::create_dir_all(&etc).unwrap();
    let example = etc.join("push-redirect.cfg");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("cfg-examples/push-redirect.cfg"),
        &example,
    )
    .unwrap();
    let module = etc.join("push_redirect.so");
    fs::copy(pr_module_path(), &module).expect("build/push_redirect.so: run make build");
    let port = free_udp_port();
    let mut cfg = format!(
        "#!KAMAILIO\n# the example on this case's port, as an operator's kamailio.cfg\n\
         #!define SIP_PORT {port}\n#!define CTL_SOCK \"unix:{run}/kamailio_ctl\"\n\
         #!define PR_MODULE \"{module}\"\n",
        run = run.display(),
        module = module.display()
    );
    if let Some(st) = store {
        cfg.push_str(&format!("#!define PR_STORE \"{}\"\n", st.display()));
    }
    cfg.push_str(&format!("include_file \"{}\"\n", example.display()));
    let cfgfile = etc.join("kamailio.cfg");
    write_file(&cfgfile, &cfg);

    // the unit's -f $CFGFILE: what an operator sets in /etc/default/kamailio
    let exec: Vec<String> = unit
        .exec
        .iter()
        .map(|a| {
            if a.ends_with("/kamailio.cfg") {
                cfgfile.display().to_string()
            } else {
                moved(a)
            }
        })
        .collect();
    assert!(
        exec.iter().any(|a| *a == cfgfile.display().to_string()),
        "ExecStart takes -f $CFGFILE: {:?}",
        unit.exec
    );
    let svc = Service {
        dir: case.dir.clone(),
        unit_user: unit.user.clone(),
        unit_group: unit.group.clone(),
        exec,
        pidfile: PathBuf::from(moved(&unit.pidfile)),
        pid: None,
        runs: 0,
        how,
        port,
    };
    (svc, format!("127.0.0.1:{port}"))
}

/// Every process of the running service is the unit user's.
fn assert_runs_as_user(svc: &Service, uid: u32) {
    let members = group_members(svc.pid.unwrap());
    println!("[e2e service] processes (pid, uid, euid): {members:?}");
    assert!(members.len() > 4, "the workers run: {members:?}");
    assert!(
        members.iter().all(|&(_, r, e)| r == uid && e == uid),
        "every process runs as uid {uid}: {members:?}"
    );
}

/// The store's files are the unit user's.
fn assert_store_owned(store: &Path, uid: u32, gid: u32) {
    let files: Vec<PathBuf> = store_files(store)
        .into_iter()
        .filter(|f| f.exists())
        .collect();
    assert!(!files.is_empty(), "no store at {}", store.display());
    for f in files {
        let m = fs::metadata(&f).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid), "owner of {}", f.display());
    }
}

fn register_at(case: &Case, addr: &str, aor: &str, t: &Terminal, q: f32) {
    assert_eq!(
        case.try_register_at(addr, aor, &t.uri(), q, 3600),
        Some(200),
        "REGISTER {} for {aor}",
        t.uri()
    );
}

/// F6 through `svc`: t3 answers 301 to t4 once; then N requests go
/// straight to t4. Returns the terminals (t3, t4).
fn f6_learn_and_apply(case: &Case, svc: &Service, addr: &str) -> (Terminal, Terminal) {
    let t4 = case.terminal("t4", Answer::Ok);
    let t3 = case.terminal("t3", Answer::Redirect301(t4.uri()));
    register_at(case, addr, U2, &t3, 1.0);
    register_at(case, addr, U2, &t4, 0.5);
    case.send_to(addr, Send::message(U2).count(1))
        .assert_all(200);
    assert_eq!(t3.wait_received(1), 1);
    assert_eq!(svc.stat("forwardings_learned"), 1);
    let r = case.send_to(addr, Send::message(U2).count(N));
    case.report(&r, &[&t3, &t4]);
    r.assert_all(200);
    assert_eq!(t4.wait_received(N as usize + 1), N as usize + 1);
    assert_eq!(t3.settled(), 1, "the redirecting terminal got no more");
    assert_eq!(svc.stat("forwardings_applied"), i64::from(N));
    (t3, t4)
}

/// After a restart: the terminals register again (usrloc keeps them in
/// memory only) and N more go straight to t4, none to t3.
fn f6_after_restart(case: &Case, svc: &Service, addr: &str, t3: &Terminal, t4: &Terminal) {
    register_at(case, addr, U2, t3, 1.0);
    register_at(case, addr, U2, t4, 0.5);
    let r = case.send_to(addr, Send::message(U2).count(N));
    case.report(&r, &[t3, t4]);
    r.assert_all(200);
    assert_eq!(t4.wait_received(2 * N as usize + 1), 2 * N as usize + 1);
    assert_eq!(t3.settled(), 1, "the learned 301 survived the restart");
    assert_eq!(svc.stat("forwardings_applied"), i64::from(N));
    assert_eq!(svc.stat("forwardings_learned"), 0);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn service_as_debian_unit_f1_f6_restart_f6() {
    let Some(unit) = usable_unit() else {
        return;
    };
    let case = Case::new("service_as_debian_unit");
    let uid = id_of("-u", &unit.user).unwrap();
    let gid = id_of("-g", &unit.user).unwrap();

    // the store: the default path in the folder make install makes, unless
    // an operator's store is there
    let default = Path::new(DEFAULT_STORE);
    let default_free = store_files(default).iter().all(|f| !f.exists());
    let store = if default_free {
        install_store_dir(&case, None);
        default.to_path_buf()
    } else {
        println!("[e2e service] {DEFAULT_STORE} exists (an operator's store?): left alone");
        let d = case.dir.join("store");
        install_store_dir(&case, Some(&d));
        d.join("push_redirect.sqlite")
    };
    let _cleanup = StoreFiles(store_files(&store), default_free);
    let folder = store.parent().unwrap();
    let meta = fs::metadata(folder).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{}", folder.display());
    assert_eq!(meta.mode() & 0o7777, 0o750, "{}", folder.display());

    let (mut svc, addr) = service(
        &case,
        &unit,
        How::Unit,
        (!default_free).then_some(store.as_path()),
    );
    svc.start();
    assert_runs_as_user(&svc, uid);

    // F1: t1 answers 302 to t2
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect302(t2.uri()));
    register_at(&case, &addr, AOR, &t1, 1.0);
    register_at(&case, &addr, AOR, &t2, 0.5);
    let r = case.send_to(&addr, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.wait_received(N as usize), N as usize);
    assert_eq!(svc.stat("redirects_followed"), i64::from(N));

    let (t3, t4) = f6_learn_and_apply(&case, &svc, &addr);
    // restart, as systemctl restart does
    svc.stop();
    svc.start();
    f6_after_restart(&case, &svc, &addr, &t3, &t4);
    assert_store_owned(&store, uid, gid);
    svc.stop();
}

/// Debian's init script starts Kamailio as root with -u/-g: Kamailio runs
/// the modules' mod_init() as root and drops to the user afterwards. The
/// store the module makes at start-up is still the user's, so the workers
/// can write it.
#[test]
#[ignore = "needs Kamailio: run via make test"]
fn service_as_debian_init_script_user_option_f6_restart_f6() {
    let Some(unit) = usable_unit() else {
        return;
    };
    let case = Case::new("service_as_debian_init_script");
    let uid = id_of("-u", &unit.user).unwrap();
    let gid = id_of("-g", &unit.user).unwrap();
    let d = case.dir.join("store");
    install_store_dir(&case, Some(&d));
    let store = d.join("push_redirect.sqlite");
    let (mut svc, addr) = service(&case, &unit, How::InitScript, Some(&store));
    svc.start();
    assert_runs_as_user(&svc, uid);
    assert_store_owned(&store, uid, gid);
    let (t3, t4) = f6_learn_and_apply(&case, &svc, &addr);
    svc.stop();
    svc.start();
    f6_after_restart(&case, &svc, &addr, &t3, &t4);
    assert_store_owned(&store, uid, gid);
    svc.stop();
}

/// A store folder the user cannot write: Kamailio does not start, and the
/// error names the user and the command that fixes it, whichever way the
/// service drops root; after that command it starts.
#[test]
#[ignore = "needs Kamailio: run via make test"]
fn service_unwritable_store_error_names_the_user_and_the_fix() {
    let Some(unit) = usable_unit() else {
        return;
    };
    let case = Case::new("service_unwritable_store");
    // root's folder, as mkdir leaves it
    let d = case.dir.join("root-owned");
    fs::create_dir_all(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    let store = d.join("push_redirect.sqlite");
    let fix = format!(
        "as root: install -d -o {u} -g {g} -m 0750 {d}",
        u = unit.user,
        g = unit.group,
        d = d.display()
    );
    for how in [How::Unit, How::InitScript] {
        let (svc, _) = service(&case, &unit, how, Some(&store));
        let (st, out, err) = svc.foreground(Duration::from_secs(15));
        let text = format!("{out}{err}");
        let line = text
            .lines()
            .find(|l| l.contains("modparam \"store\": cannot use"))
            .unwrap_or_else(|| panic!("no store error ({st:?}):\n{text}"));
        println!(
            "[e2e service] {}: {line}",
            if how == How::Unit {
                "unit"
            } else {
                "init script"
            }
        );
        assert!(
            st.is_some_and(|s| !s.success()),
            "kamailio did not start: {st:?}"
        );
        assert!(
            line.contains(&format!("Kamailio runs as user '{}'", unit.user)),
            "{line}"
        );
        assert!(line.ends_with(&fix), "{line}");
        assert!(!store.exists(), "nothing made as root");
    }
    // the command the error gives, then the unit's start works
    let (prog, args) = (
        "install",
        ["-d", "-o", &unit.user, "-g", &unit.group, "-m", "0750"],
    );
    let ok = Command::new(prog)
        .args(args)
        .arg(&d)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let (mut svc, _) = service(&case, &unit, How::Unit, Some(&store));
    svc.start();
    assert!(store.exists());
    svc.stop();
}
