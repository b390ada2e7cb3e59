//! The proxy under test: started in the foreground in its own process
//! group, probed until it answers SIP, stopped by PID.

use std::collections::BTreeMap;
use std::fs;
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::process::*;
use super::*;

/// The proxy under test: `E2E_PROXY=kamailio` (the default) or `opensips`.
/// Under opensips, `case.proxy("NAME.cfg")` runs `cfg/opensips/NAME.cfg`
/// (its knobs are placeholders, see `opensips.rs`), `rpc()` speaks MI over
/// the MI FIFO and only the cases listed in `tests/e2e/shared-cases.txt`
/// run (`Case::new`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    Kamailio,
    Opensips,
}

impl ProxyKind {
    /// `E2E_PROXY` (panics on a value that is neither).
    pub fn from_env() -> ProxyKind {
        match std::env::var("E2E_PROXY").as_deref() {
            Err(_) | Ok("") | Ok("kamailio") => ProxyKind::Kamailio,
            Ok("opensips") => ProxyKind::Opensips,
            Ok(other) => panic!("E2E_PROXY={other}: kamailio or opensips"),
        }
    }
    /// "kamailio" or "opensips": its binary, its folder in a case, its logs.
    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Kamailio => "kamailio",
            ProxyKind::Opensips => "opensips",
        }
    }
    /// `cfg` (a name under tests/e2e/cfg/ or a path) for this proxy: under
    /// opensips a bare name is looked up under cfg/opensips/.
    pub fn cfg_path(self, cfg: &str) -> PathBuf {
        let p = Path::new(cfg);
        if p.is_absolute() || p.exists() {
            return p.to_path_buf();
        }
        match self {
            ProxyKind::Kamailio => e2e_dir().join("cfg").join(cfg),
            ProxyKind::Opensips => e2e_dir().join("cfg").join("opensips").join(cfg),
        }
    }
}

/// The proxy under test of this run (`E2E_PROXY`).
pub fn proxy_kind() -> ProxyKind {
    ProxyKind::from_env()
}

/// A knob of a test cfg: Kamailio gets it as `-A`, OpenSIPS substituted
/// for `@NAME@`.
#[derive(Clone, Debug)]
pub(super) enum Define {
    /// `-A NAME=value`; `@NAME@` -> value
    Token(String, String),
    /// `-A NAME="value"`; `@NAME@` -> value (the cfg quotes it)
    Str(String, String),
    /// `-A NAME`; `@NAME@` -> 1
    Flag(String),
}

impl Define {
    fn kamailio_arg(&self) -> String {
        match self {
            Define::Token(n, v) => format!("{n}={v}"),
            Define::Str(n, v) => format!("{n}=\"{v}\""),
            Define::Flag(n) => n.clone(),
        }
    }
    fn name_value(&self) -> (String, String) {
        match self {
            Define::Token(n, v) | Define::Str(n, v) => (n.clone(), v.clone()),
            Define::Flag(n) => (n.clone(), "1".into()),
        }
    }
}

pub struct ProxyBuilder {
    pub(super) kind: ProxyKind,
    pub(super) dir: PathBuf,
    pub(super) case: String,
    pub(super) cfg: PathBuf,
    pub(super) port: Option<u16>,
    pub(super) children: u32,
    pub(super) defines: Vec<Define>,
    pub(super) args: Vec<String>,
    pub(super) ready_timeout: Duration,
}

impl ProxyBuilder {
    /// UDP port on 127.0.0.1 (default: a free one). The cfg gets it as SIP_PORT.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    /// Worker processes, passed as `-A CHILDREN=n` (the cfg sets `children=CHILDREN`). Default 4.
    pub fn children(mut self, n: u32) -> Self {
        self.children = n;
        self
    }
    /// `-A NAME=value` (a number or a bare token: `define("FR_TIMER", "1000")`).
    pub fn define(mut self, name: &str, value: &str) -> Self {
        self.defines
            .push(Define::Token(name.to_string(), value.to_string()));
        self
    }
    /// `-A NAME="value"` (a string, e.g. a path).
    pub fn define_str(mut self, name: &str, value: &str) -> Self {
        self.defines
            .push(Define::Str(name.to_string(), value.to_string()));
        self
    }
    /// `-A NAME` (for `#!ifdef NAME`).
    pub fn flag(mut self, name: &str) -> Self {
        self.defines.push(Define::Flag(name.to_string()));
        self
    }
    /// Any other command-line argument of the proxy.
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }
    pub fn start(self) -> Proxy {
        let mut p = self.build();
        p.spawn();
        p
    }

    /// Starts a proxy that must refuse to run (a bad parameter): waits at
    /// most `within` for it to exit by itself. Returns its exit status
    /// (None: still running after `within`, then killed) and its log.
    pub fn start_expecting_exit(self, within: Duration) -> (Option<ExitStatus>, String) {
        let mut p = self.build();
        p.launch();
        let end = Instant::now() + within;
        let status = loop {
            match p.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(st))) => break Some(st),
                Some(Ok(None)) if Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => break None,
            }
        };
        match status {
            None => p.kill_group(SIGKILL),
            Some(_) => {
                // reaped: its group is found by the PGID it leaves, never
                // signalled
                let pgid = p.child.take().map(|c| c.id() as i32).unwrap_or(-1);
                wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
                    group_pids(pgid).is_empty()
                });
            }
        }
        println!(
            "[e2e {}] {} ({}) exited by itself: {status:?}",
            p.case,
            p.kind.name(),
            p.cfg.file_name().unwrap_or_default().to_string_lossy()
        );
        (status, p.log_text())
    }

    fn build(self) -> Proxy {
        let port = self.port.unwrap_or_else(free_udp_port);
        Proxy {
            kind: self.kind,
            case: self.case,
            dir: self.dir,
            cfg: self.cfg,
            port,
            children: self.children,
            defines: self.defines,
            args: self.args,
            ready_timeout: self.ready_timeout,
            child: None,
            runs: 0,
            log: PathBuf::new(),
        }
    }
}

/// A running Kamailio: `kamailio -DD -E -f CFG` in its own process group,
/// stderr to `kamailio/kamailio.N.log` (N = run number: restarts keep the old logs).
///
/// The cfg receives `-A SIP_PORT=port -A CHILDREN=n -A CTL_SOCK="unix:DIR/ctl"`
/// plus the builder's defines; `-Y DIR/run -w DIR`.
///
/// Or a running OpenSIPS (`E2E_PROXY=opensips`): `opensips -F -f
/// DIR/opensips.cfg -w DIR` (main process in the foreground, its own
/// process group), the cfg written from `cfg/opensips/NAME.cfg` with
/// SIP_PORT, CHILDREN, `MI_FIFO=DIR/mi_fifo`, MPATH and the builder's
/// defines substituted; stderr (`stderror_enabled=yes`) to
/// `opensips/opensips.N.log`.
pub struct Proxy {
    pub kind: ProxyKind,
    pub case: String,
    pub dir: PathBuf,
    pub cfg: PathBuf,
    pub port: u16,
    children: u32,
    defines: Vec<Define>,
    args: Vec<String>,
    ready_timeout: Duration,
    child: Option<Child>,
    runs: usize,
    log: PathBuf,
}

impl Proxy {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    pub fn ctl_sock(&self) -> String {
        format!("unix:{}", self.dir.join("ctl").display())
    }
    pub fn log_path(&self) -> &Path {
        &self.log
    }
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// OpenSIPS's MI FIFO (its cfg's `MI_FIFO`).
    pub fn mi_fifo(&self) -> PathBuf {
        self.dir.join("mi_fifo")
    }

    fn kamailio_cmd(&self) -> Command {
        let run = self.dir.join("run");
        fs::create_dir_all(&run).unwrap();
        let _ = fs::remove_file(self.dir.join("ctl"));
        let mut cmd = Command::new(kamailio_bin());
        cmd.args(["-DD", "-E", "-f"])
            .arg(&self.cfg)
            .args(["-A", &format!("SIP_PORT={}", self.port)])
            .args(["-A", &format!("CHILDREN={}", self.children)])
            .args(["-A", &format!("CTL_SOCK=\"{}\"", self.ctl_sock())])
            .arg("-Y")
            .arg(&run)
            .arg("-w")
            .arg(&self.dir);
        for d in &self.defines {
            cmd.args(["-A", &d.kamailio_arg()]);
        }
        cmd
    }

    /// The cfg with its placeholders substituted, written to
    /// `DIR/opensips.cfg`; panics with what is wrong.
    fn opensips_cfg(&self) -> PathBuf {
        let text = fs::read_to_string(&self.cfg)
            .unwrap_or_else(|e| panic!("[e2e {}] {}: {e}", self.case, self.cfg.display()));
        let mut values = vec![
            ("SIP_PORT".to_string(), self.port.to_string()),
            ("CHILDREN".to_string(), self.children.to_string()),
            ("MI_FIFO".to_string(), self.mi_fifo().display().to_string()),
            ("MPATH".to_string(), opensips_mpath()),
        ];
        let mut from_case = Vec::new();
        for d in &self.defines {
            let (n, v) = d.name_value();
            from_case.push(n.clone());
            values.push((n, v));
        }
        let out = render_cfg(&text, &values, &from_case)
            .unwrap_or_else(|e| panic!("[e2e {}] {}: {e}", self.case, self.cfg.display()));
        let path = self.dir.join("opensips.cfg");
        write_file(&path, &out);
        path
    }

    fn opensips_cmd(&self) -> Command {
        let cfg = self.opensips_cfg();
        let _ = fs::remove_file(self.mi_fifo());
        let mut cmd = Command::new(opensips_bin());
        cmd.args(["-F", "-f"]).arg(&cfg).arg("-w").arg(&self.dir);
        cmd
    }

    /// Starts it (a new log) and waits until it answers SIP; panics if it
    /// does not.
    fn spawn(&mut self) {
        let name = self.kind.name();
        self.launch();
        let t0 = Instant::now();
        if let Err(why) = self.wait_ready() {
            self.kill_group(SIGKILL);
            panic!(
                "[e2e {}] {name} ({}) not ready after {:.1}s: {why}\n--- {} (tail) ---\n{}",
                self.case,
                self.cfg.display(),
                t0.elapsed().as_secs_f64(),
                self.log.display(),
                tail(&self.log, 40)
            );
        }
        println!(
            "[e2e {}] {name} pid {} on {} ready in {:.2}s (cfg {})",
            self.case,
            self.pid().unwrap(),
            self.addr(),
            t0.elapsed().as_secs_f64(),
            self.cfg.file_name().unwrap_or_default().to_string_lossy()
        );
    }

    /// Starts the process (its own group, a new log file).
    fn launch(&mut self) {
        self.runs += 1;
        let name = self.kind.name();
        self.log = self.dir.join(format!("{name}.{}.log", self.runs));
        let mut cmd = match self.kind {
            ProxyKind::Kamailio => self.kamailio_cmd(),
            ProxyKind::Opensips => self.opensips_cmd(),
        };
        cmd.args(&self.args);
        let log = fs::File::create(&self.log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .current_dir(&self.dir)
            .process_group(0);
        die_with_parent(&mut cmd);
        fs::write(
            self.dir.join(format!("cmdline.{}", self.runs)),
            format!("{cmd:?}\n"),
        )
        .ok();
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "spawn {name} ({}): {e}",
                cmd.get_program().to_string_lossy()
            )
        });
        self.child = Some(child);
    }

    /// Ready = it answered a SIP request (any response) on its port. The probe
    /// is `OPTIONS sip:127.0.0.1:PORT` with Max-Forwards: 0, which a cfg
    /// answers with 483 (mf_process_maxfwd_header) or its keepalive 200.
    fn wait_ready(&mut self) -> Result<(), String> {
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let end = Instant::now() + self.ready_timeout;
        let mut n = 0;
        while Instant::now() < end {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("{} exited: {st}", self.kind.name()));
            }
            if udp_port_bound(self.port) {
                n += 1;
                if options_probe_answered(&sock, self.port, n) {
                    // OpenSIPS: and its MI FIFO process made the FIFO
                    if self.kind == ProxyKind::Kamailio || self.mi_fifo().exists() {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            } else {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Err(
            if udp_port_bound(self.port) && self.kind == ProxyKind::Opensips {
                format!(
                    "no answer to the OPTIONS probe, or no MI FIFO {}",
                    self.mi_fifo().display()
                )
            } else if udp_port_bound(self.port) {
                "no answer to the OPTIONS probe".into()
            } else {
                "port never bound".into()
            },
        )
    }

    /// PIDs in our Kamailio's process group that are not zombies.
    fn group_members(&self) -> Vec<i32> {
        match self.pid() {
            Some(pgid) => group_pids(pgid as i32),
            None => vec![],
        }
    }

    /// Signals the whole group. Safe: the group leader is our child and is not
    /// reaped yet, so its PID (= the PGID) cannot have been reused.
    fn kill_group(&mut self, sig: i32) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let pgid = child.id() as i32;
        unsafe {
            kill(-pgid, sig);
        }
        if sig == SIGKILL {
            wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
                self.group_members().is_empty()
            });
            if let Some(mut c) = self.child.take() {
                let _ = c.wait();
            }
        }
    }

    /// Graceful stop (SIGTERM to the group, up to 5 s, then SIGKILL). Idempotent.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.kill_group(SIGTERM);
        // E2E_STOP_SECS: more time to exit cleanly (valgrind writes its
        // summaries at exit).
        let grace = std::env::var("E2E_STOP_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5);
        let clean = wait_until(
            Duration::from_secs(grace),
            Duration::from_millis(20),
            || self.group_members().is_empty(),
        );
        if !clean {
            eprintln!(
                "[e2e {}] kamailio did not stop on SIGTERM within 5 s: SIGKILL",
                self.case
            );
        }
        self.kill_group(SIGKILL);
    }

    /// The group's processes other than the main one (workers, timers,
    /// TCP main, ...).
    pub fn child_pids(&self) -> Vec<i32> {
        let main = self.pid().map(|p| p as i32);
        self.group_members()
            .into_iter()
            .filter(|p| Some(*p) != main)
            .collect()
    }

    /// Sends `sig` to one process of the group; false (nothing sent) when
    /// `pid` is not, or no longer, one of its processes.
    pub fn signal(&self, pid: i32, sig: i32) -> bool {
        if !self.group_members().contains(&pid) {
            return false;
        }
        unsafe { kill(pid, sig) == 0 }
    }

    /// Waits (at most `within`) for the main process to exit by itself,
    /// then for every process of its group to be gone; returns the main
    /// process' exit status (None: still running, it was then SIGKILLed).
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + within;
        let status = loop {
            match self.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(st))) => break Some(st),
                None => break None,
                _ if Instant::now() >= end => break None,
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let Some(st) = status else {
            // where each process that is left stands, for the report
            let stacks = self.stacks();
            let _ = fs::write(self.dir.join("stacks.txt"), &stacks);
            eprintln!(
                "[e2e {}] kamailio still running after {:.0}s; its stacks:\n{stacks}",
                self.case,
                within.as_secs_f64()
            );
            self.kill_group(SIGKILL);
            return None;
        };
        // the main process is reaped: its PID may be reused, so the group
        // is found by the PGID it leaves behind, never signalled
        let pgid = self.child.take().map(|c| c.id() as i32).unwrap_or(-1);
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            group_pids(pgid).is_empty()
        });
        Some(st)
    }

    /// `gdb -batch` backtraces of every process of the group (process name
    /// and frames), bounded to 20 s per process.
    pub fn stacks(&self) -> String {
        let mut out = String::new();
        for pid in self.group_members() {
            let comm = fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            let mut cmd = Command::new("gdb");
            // frame 0 is glibc's syscall() when a process waits on one of
            // Kamailio's futex locks: rdi holds the lock's address, printed
            // beside the core's known locks to tell which it is
            cmd.args(["-batch", "-nx", "-ex", "bt 25"])
                .args(["-ex", "printf \"futex rdi=%#lx\\n\", $rdi"])
                .args([
                    "-ex",
                    "printf \"cfg_global_lock=%#lx\\n\", *(long*)&cfg_global_lock",
                ])
                .args([
                    "-ex",
                    "printf \"cfg_writer_lock=%#lx\\n\", *(long*)&cfg_writer_lock",
                ])
                .args([
                    "-ex",
                    "printf \"process_lock=%#lx\\n\", *(long*)&process_lock",
                ])
                .args(["-p", &pid.to_string()]);
            let (_, text, _) = run_bounded(cmd, &self.dir, "gdb", Duration::from_secs(20));
            out.push_str(&format!("--- pid {pid} {}\n", comm.trim()));
            for l in text
                .lines()
                .filter(|l| l.starts_with('#') || l.contains("=0x") || l.contains("rdi="))
            {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Kamailio's own way down: SIGTERM to the main process only (it ends
    /// its children; as `kamctl stop`); returns its exit status (see
    /// `wait_exit`).
    pub fn stop_main(&mut self) -> Option<ExitStatus> {
        self.stop_with(false)
    }

    /// SIGTERM to every process at once (systemd's KillMode=control-group);
    /// returns the main process' exit status (see `wait_exit`).
    pub fn stop_group(&mut self) -> Option<ExitStatus> {
        self.stop_with(true)
    }

    fn stop_with(&mut self, group: bool) -> Option<ExitStatus> {
        let pid = self.pid()? as i32;
        unsafe {
            kill(if group { -pid } else { pid }, SIGTERM);
        }
        let grace = std::env::var("E2E_STOP_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5);
        self.wait_exit(Duration::from_secs(grace))
    }

    /// Core files Kamailio left in its working folder (`-w`): `core` or
    /// `core.PID` (kernel.core_pattern "core", as Debian sets it).
    pub fn core_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n == "core" || n.starts_with("core."))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// A crash: SIGKILL to every Kamailio process at once (no shutdown code runs).
    pub fn kill9(&mut self) {
        self.kill_group(SIGKILL);
    }

    /// Stops (gracefully) and starts again: same cfg, port, defines; a new log file.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// kill -9, then starts again.
    pub fn crash_and_restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// `kamcmd -s <ctl> args...` (bounded to 10 s). Err carries stderr, or
    /// the RPC fault.
    ///
    /// On OpenSIPS, the MI command of the same name over the MI FIFO
    /// (`push_redirect.list` -> `push_redirect_list`, the arguments as
    /// positional string params; `stats.get_statistics G:` ->
    /// `get_statistics`), its result printed as kamcmd prints the RPC's
    /// (`Json::kamcmd_text`); Err carries the MI error.
    pub fn rpc(&self, args: &[&str]) -> Result<String, String> {
        match self.kind {
            ProxyKind::Kamailio => self.kamcmd(args),
            ProxyKind::Opensips => self.mi(args).map(|j| j.kamcmd_text()),
        }
    }

    fn kamcmd(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(kamcmd_bin());
        cmd.arg("-s").arg(self.ctl_sock()).args(args);
        let (st, out, err) = run_bounded(cmd, &self.dir, "kamcmd", Duration::from_secs(10));
        match st {
            // kamcmd exits 0 on an RPC fault, printing "error: CODE - text".
            Some(s) if s.success() && out.trim_start().starts_with("error:") => {
                Err(format!("kamcmd {args:?}: {}", out.trim()))
            }
            Some(s) if s.success() => Ok(out),
            Some(s) => Err(format!(
                "kamcmd {args:?}: {s}: {}{}",
                err.trim(),
                out.trim()
            )),
            None => Err(format!("kamcmd {args:?}: timed out")),
        }
    }

    /// An MI command over the MI FIFO (bounded to 10 s): `args` as `rpc`
    /// takes them.
    pub fn mi(&self, args: &[&str]) -> Result<Json, String> {
        let Some((method, rest)) = args.split_first() else {
            return Err("no MI command".into());
        };
        let quoted: Vec<String> = rest.iter().map(|a| Json::quote(a)).collect();
        let (method, params) = match *method {
            "stats.get_statistics" => (
                "get_statistics".to_string(),
                format!("{{\"statistics\":[{}]}}", quoted.join(",")),
            ),
            m => (m.replace('.', "_"), format!("[{}]", quoted.join(","))),
        };
        mi_call(&self.mi_fifo(), &method, &params, Duration::from_secs(10))
    }

    /// `kamcmd stats.get_statistics GROUP:` (e.g. "push_redirect:", "tmx:") as
    /// name (without the group) -> value. Panics if kamcmd fails. On
    /// OpenSIPS, MI `get_statistics GROUP:` ('-' in a name read as '_',
    /// as Kamailio names them).
    pub fn statistics(&self, group: &str) -> BTreeMap<String, i64> {
        let group = if group.ends_with(':') {
            group.to_string()
        } else {
            format!("{group}:")
        };
        if self.kind == ProxyKind::Opensips {
            let res = self
                .mi(&["stats.get_statistics", &group])
                .unwrap_or_else(|e| panic!("{e}"));
            let Json::Obj(kv) = res else {
                panic!("MI get_statistics {group}: not an object: {res:?}");
            };
            return kv
                .into_iter()
                .filter_map(|(k, v)| {
                    let Json::Num(n) = v else { return None };
                    // usrloc's "location-contacts" is Kamailio's
                    // "location_contacts"
                    let name = k.strip_prefix(group.as_str()).unwrap_or(&k);
                    Some((name.replace('-', "_"), n.parse().ok()?))
                })
                .collect();
        }
        let out = self
            .rpc(&["stats.get_statistics", &group])
            .unwrap_or_else(|e| panic!("{e}"));
        out.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                let k = k.trim();
                Some((
                    k.strip_prefix(group.as_str()).unwrap_or(k).to_string(),
                    v.trim().parse().ok()?,
                ))
            })
            .collect()
    }

    /// The process that wrote a line of its log: Kamailio's ` 3(12345) INFO:
    /// ...` or OpenSIPS's `Dec  5 15:09:46 [12345] INFO:...` -> "12345".
    pub fn log_pid(&self, line: &str) -> Option<String> {
        let (open, close) = match self.kind {
            ProxyKind::Kamailio => ('(', ')'),
            ProxyKind::Opensips => ('[', ']'),
        };
        let rest = line.split_once(open)?.1;
        let pid = rest.split_once(close)?.0;
        (!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then(|| pid.to_string())
    }

    /// Lines of the current log containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.kill9();
            eprintln!(
                "--- {} (tail) ---\n{}",
                self.log.display(),
                tail(&self.log, 30)
            );
        } else {
            self.stop();
        }
    }
}

impl ProxyBuilder {
    /// Its own folder `name` under the case's (default `kamailio`, or
    /// `opensips`): for a second proxy in one case (its log, ctl socket or
    /// MI FIFO, and run files).
    pub fn in_dir(mut self, name: &str) -> Self {
        if let Some(case_dir) = self.dir.parent() {
            self.dir = case_dir.join(name);
            fs::create_dir_all(&self.dir).unwrap();
        }
        self
    }
}
