//! End-to-end harness: a real Kamailio (foreground, own process group) plus
//! sipp terminals (UAS), a sipp REGISTER UAC and a sipp sender UAC, all on
//! 127.0.0.1. std only.
//!
//! ```ignore
//! let case = Case::new("redirect_302");
//! let proxy = case.proxy("stock-uac-redirect.cfg").start();
//! let t2 = case.terminal("t2", Answer::Ok);
//! let t1 = case.terminal("t1", Answer::Redirect302(t2.uri()));
//! case.register(&proxy, AOR, &t1, 1.0, 3600);
//! let r = case.send(&proxy, Send::message(AOR).count(50));
//! case.report(&r, &[&t1, &t2]);
//! assert_eq!(r.count(200), 50);
//! assert_eq!(t1.wait_received(50), 50);
//! assert_eq!(t2.wait_received(50), 50);
//! ```
//!
//! Counting:
//! - a terminal's `received()` is the number of distinct requests (Call-ID +
//!   top Via branch) in its sipp message log (`-trace_msg`), which sipp
//!   flushes per message: the proxy's retransmissions of one branch count
//!   once, a second branch of the same transaction to the same terminal
//!   counts again. `handled()` is the number of `<log>` lines its scenario
//!   wrote (requests that started a new sipp call).
//! - the sender's result comes from its `<log>` lines (one `FINAL <code>`
//!   line per request that got a final response: exact counts per code), its
//!   final statistics file (`-trace_stat`: successful / failed / timeouts /
//!   unexpected), its exit code, and its `-trace_err` file (the status lines
//!   of responses the scenario did not list).
//!
//! Every wait is bounded; every process started is killed and reaped on Drop
//! (Kamailio: its whole process group, which it leads; sipp: the one PID).
//!
//! Environment: `E2E_DIR` (default `$CARGO_MANIFEST_DIR/tests/e2e`),
//! `E2E_TMP` (default `$TMPDIR/push_redirect-e2e`), `E2E_KEEP=1` keeps the
//! case directories of passing tests too (failing ones are always kept),
//! `KAMAILIO` / `SIPP` / `KAMCMD` (binaries, default from PATH or /usr/sbin),
//! `E2E_PR_MODULE` (the push_redirect.so, default `build/push_redirect.so`),
//! `E2E_SLOW=k` (Kamailio under valgrind): senders send k times slower and
//! wait k times longer for each final response; the counts checked stay
//! the same.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const AOR: &str = "sip:u1@example.com";

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
const PR_SET_PDEATHSIG: i32 = 1;

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
    fn prctl(option: i32, ...) -> i32;
}

// ------------------------------------------------------------------ paths, tools

/// The path in environment variable `env`, else `rel` under the crate.
fn env_path(env: &str, rel: &str) -> PathBuf {
    match std::env::var_os(env) {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(rel),
    }
}

/// `tests/e2e` (scenarios/, cfg/).
pub fn e2e_dir() -> PathBuf {
    env_path("E2E_DIR", "tests/e2e")
}

pub fn scenario(name: &str) -> PathBuf {
    e2e_dir().join("scenarios").join(name)
}

fn tool(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// The push_redirect.so under test: `E2E_PR_MODULE`, else
/// `build/push_redirect.so` (`make test-versions` builds one per Kamailio
/// version, `build/<version>/push_redirect.so`).
pub fn pr_module_path() -> PathBuf {
    env_path("E2E_PR_MODULE", "build/push_redirect.so")
}

pub fn kamailio_bin() -> PathBuf {
    tool("KAMAILIO", "kamailio")
}
pub fn sipp_bin() -> PathBuf {
    tool("SIPP", "sipp")
}
pub fn kamcmd_bin() -> PathBuf {
    tool("KAMCMD", "kamcmd")
}

/// Panics with a clear message when kamailio or sipp is missing.
pub fn require_tools() {
    for (b, pkg) in [(kamailio_bin(), "kamailio"), (sipp_bin(), "sip-tester")] {
        if !b.is_file() {
            panic!(
                "{} not found: install Debian's {pkg} (make test does)",
                b.display()
            );
        }
    }
}

// ------------------------------------------------------------------ small helpers

/// A UDP port on 127.0.0.1 that was free a moment ago, never handed out twice
/// by this process.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`), so that
/// no socket bound to port 0 meanwhile (this harness's probes, sipp's own
/// sockets, another test run) can be given it before the Kamailio or sipp
/// it is meant for binds it: a port taken from `bind(0)` and released could
/// be, and a proxy then failed to start with "Address already in use".
pub fn free_udp_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let set = given.get_or_insert_with(HashSet::new);
    // sipp's own side ports are 6000+ (media) and 8888+ (control).
    let low: u16 = 20000;
    let high = ephemeral_low().saturating_sub(1).max(low + 1000);
    let mut x = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    for _ in 0..2000 {
        // xorshift64: a different start in each test process
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = low + (x % u64::from(high - low + 1)) as u16;
        if set.contains(&port) || UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        set.insert(port);
        return port;
    }
    panic!("no free UDP port in {low}..={high}");
}

/// The first port of the kernel's ephemeral range (32768 if unreadable).
fn ephemeral_low() -> u16 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// True when some socket is bound to udp 127.0.0.1:port or 0.0.0.0:port.
pub fn udp_port_bound(port: u16) -> bool {
    socket_on("/proc/net/udp", port, None)
}

/// True when some socket listens on tcp 127.0.0.1:port or 0.0.0.0:port.
pub fn tcp_port_listening(port: u16) -> bool {
    // 0A: TCP_LISTEN
    socket_on("/proc/net/tcp", port, Some("0A"))
}

/// Whether `table` (/proc/net/udp or tcp) has a socket on 127.0.0.1:port or
/// 0.0.0.0:port, in `state` when given.
fn socket_on(table: &str, port: u16, state: Option<&str>) -> bool {
    let Ok(text) = fs::read_to_string(table) else {
        return false;
    };
    let want = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    text.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && want.iter().any(|w| w == f[1]) && state.is_none_or(|st| f[3] == st)
    })
}

/// How a terminal is reached: the transport its sipp listens on and its
/// registered contact names (`;transport=tcp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// A terminal on TLS is `support/tls_terminal.py` (Debian's sipp has
    /// no TLS), with the certificates of `Case::tls_files`.
    Tls,
}

impl Transport {
    /// sipp's `-t` mode for a UAS on this transport.
    fn sipp_mode(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
            Transport::Tls => "l1",
        }
    }
    /// The contact URI parameter, "" for UDP (the default).
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
        }
    }
    fn bound(self, port: u16) -> bool {
        match self {
            Transport::Udp => udp_port_bound(port),
            Transport::Tcp | Transport::Tls => tcp_port_listening(port),
        }
    }
    /// As `bound`, on ::1 (or ::).
    fn bound_v6(self, port: u16) -> bool {
        let (table, state) = match self {
            Transport::Udp => ("/proc/net/udp6", None),
            Transport::Tcp | Transport::Tls => ("/proc/net/tcp6", Some("0A")),
        };
        let Ok(text) = fs::read_to_string(table) else {
            return false;
        };
        let want = [
            format!("00000000000000000000000001000000:{port:04X}"),
            format!("00000000000000000000000000000000:{port:04X}"),
        ];
        text.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && want.iter().any(|w| w == f[1]) && state.is_none_or(|st| f[3] == st)
        })
    }
}

fn wait_until(timeout: Duration, step: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(step);
    }
}

/// `pre_exec` for every child: die with the test process (if it is SIGKILLed
/// its Drop guards cannot run).
fn die_with_parent(cmd: &mut Command) {
    unsafe {
        cmd.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL as std::os::raw::c_ulong);
            Ok(())
        });
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Runs a command to completion with a deadline; stdout and stderr go to
/// files (no pipe can fill up). Returns (status or None if killed, stdout, stderr).
pub fn run_bounded(
    mut cmd: Command,
    dir: &Path,
    tag: &str,
    timeout: Duration,
) -> (Option<ExitStatus>, String, String) {
    let out = dir.join(format!("{tag}.stdout"));
    let err = dir.join(format!("{tag}.stderr"));
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out).expect("create stdout file"))
        .stderr(fs::File::create(&err).expect("create stderr file"))
        .process_group(0);
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let end = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    (
        status,
        fs::read_to_string(&out).unwrap_or_default(),
        fs::read_to_string(&err).unwrap_or_default(),
    )
}

fn kill_child(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

// ------------------------------------------------------------------ Case

static CASE_SEQ: AtomicUsize = AtomicUsize::new(0);

/// One test case: a scratch directory (kept when the test fails) and the
/// factory of the processes it runs. The processes are owned by the values
/// it returns (`Proxy`, `Terminal`), which kill them on Drop.
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    started: Instant,
}

impl Case {
    pub fn new(name: &str) -> Case {
        require_tools();
        let base = match std::env::var_os("E2E_TMP") {
            Some(d) => PathBuf::from(d),
            None => std::env::temp_dir().join("push_redirect-e2e"),
        };
        let n = CASE_SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = base.join(format!("{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        println!("[e2e {name}] dir {}", dir.display());
        Case {
            name: name.to_string(),
            dir,
            started: Instant::now(),
        }
    }

    fn subdir(&self, name: &str) -> PathBuf {
        let d = self.dir.join(name);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A Kamailio with `cfg` (a name under tests/e2e/cfg/ or a path).
    pub fn proxy(&self, cfg: &str) -> ProxyBuilder {
        self.proxy_in(cfg, "kamailio")
    }

    /// As `proxy`, in the case's folder `dir` (a second Kamailio of the
    /// case, e.g. an edge proxy, needs its own).
    pub fn proxy_in(&self, cfg: &str, dir: &str) -> ProxyBuilder {
        let p = Path::new(cfg);
        let cfg = if p.is_absolute() || p.exists() {
            p.to_path_buf()
        } else {
            e2e_dir().join("cfg").join(cfg)
        };
        ProxyBuilder {
            dir: self.subdir(dir),
            case: self.name.clone(),
            cfg,
            port: None,
            children: 4,
            defines: Vec::new(),
            args: Vec::new(),
            // E2E_READY_SECS: more time to start (Kamailio under valgrind).
            ready_timeout: Duration::from_secs(
                std::env::var("E2E_READY_SECS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(15),
            ),
        }
    }

    /// A sipp UAS on its own 127.0.0.1 port that answers every request with `answer`.
    pub fn terminal(&self, name: &str, answer: Answer) -> Terminal {
        self.terminal_with(name, answer, &[])
    }

    /// As `terminal`, with extra header lines in every reply (e.g. "Expires: 60").
    pub fn terminal_with(&self, name: &str, answer: Answer, extra_headers: &[&str]) -> Terminal {
        self.terminal_ext(name, answer, extra_headers, Duration::ZERO)
    }

    /// As `terminal_with`, answering each request `delay` after it arrived
    /// (no effect on NoAnswer). The proxy retransmits a request every 500 ms
    /// (UDP) until then: the terminal's sipp absorbs the copies.
    pub fn terminal_ext(
        &self,
        name: &str,
        answer: Answer,
        extra_headers: &[&str],
        delay: Duration,
    ) -> Terminal {
        self.terminal_at(free_udp_port(), name, answer, extra_headers, delay)
    }

    /// As `terminal_ext`, on a port taken before with `free_udp_port()`: for
    /// terminals that point at each other (t1 redirects to t2, t2 back to t1;
    /// see `terminal_uri`).
    pub fn terminal_at(
        &self,
        port: u16,
        name: &str,
        answer: Answer,
        extra_headers: &[&str],
        delay: Duration,
    ) -> Terminal {
        Terminal::start(
            self,
            name,
            (port, Transport::Udp),
            answer,
            extra_headers,
            delay,
            Duration::from_secs(300),
        )
    }

    /// A terminal whose sipp listens on `transport` (a free port); its
    /// `uri()` carries `;transport=...`, so the proxy reaches it that way.
    pub fn terminal_on(&self, transport: Transport, name: &str, answer: Answer) -> Terminal {
        Terminal::start(
            self,
            name,
            (free_udp_port(), transport),
            answer,
            &[],
            Duration::ZERO,
            Duration::from_secs(300),
        )
    }

    /// REGISTERs `t`'s own address (sip:NAME@127.0.0.1:PORT) for `aor`; panics unless 200.
    pub fn register(&self, proxy: &Proxy, aor: &str, t: &Terminal, q: f32, expires: u32) {
        self.register_contact(proxy, aor, &t.uri(), q, expires)
    }

    /// REGISTERs any contact URI for `aor` (expires 0 removes it); panics unless 200.
    pub fn register_contact(&self, proxy: &Proxy, aor: &str, contact: &str, q: f32, expires: u32) {
        let code = self.try_register(proxy, aor, contact, q, expires);
        assert_eq!(
            code,
            Some(200),
            "[e2e {}] REGISTER {contact} for {aor}: final {code:?}",
            self.name
        );
    }

    /// REGISTER and return its final response code (None: none within 5 s).
    pub fn try_register(
        &self,
        proxy: &Proxy,
        aor: &str,
        contact: &str,
        q: f32,
        expires: u32,
    ) -> Option<u16> {
        self.try_register_at(&proxy.addr(), aor, contact, q, expires)
    }

    /// As `try_register`, to any address ("127.0.0.1:PORT"), e.g. a Kamailio
    /// the harness did not start.
    pub fn try_register_at(
        &self,
        addr: &str,
        aor: &str,
        contact: &str,
        q: f32,
        expires: u32,
    ) -> Option<u16> {
        let reg = Register {
            aor,
            contact,
            q,
            expires,
            from: ("127.0.0.1", free_udp_port()),
            extra: &[],
            cparams: "",
        };
        self.try_register_from(addr, &reg)
    }

    /// A REGISTER as `reg` says (its source address, extra headers such as
    /// `Allow: NOTIFY`), to `addr` (`127.0.0.1:PORT` or `[::1]:PORT`);
    /// its final response code (None: none within 5 s).
    pub fn try_register_from(&self, addr: &str, reg: &Register<'_>) -> Option<u16> {
        let Register {
            aor,
            contact,
            q,
            expires,
            from: (ip, port),
            extra,
            cparams,
        } = *reg;
        let extra: String = extra.iter().map(|h| format!("\r\n{h}")).collect();
        let n = CASE_SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = self.subdir(&format!("register-{n}"));
        let log = dir.join("actions.log");
        let mut cmd = Command::new(sipp_bin());
        cmd.current_dir(&dir)
            .arg("-sf")
            .arg(scenario("register.xml"))
            .args(["-key", "aor", aor, "-key", "contact", contact])
            .args([
                "-key",
                "q",
                &format!("{q:.3}"),
                "-key",
                "expires",
                &expires.to_string(),
                "-key",
                "extra",
                &extra,
                "-key",
                "cparams",
                cparams,
            ])
            .args(["-i", ip, "-p", &port.to_string()])
            .arg(addr)
            .args([
                "-m",
                "1",
                "-nostdin",
                "-recv_timeout",
                "5000",
                "-timeout",
                "10s",
            ])
            .arg("-trace_logs")
            .arg("-log_file")
            .arg(&log)
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.join("messages.log"));
        let (status, _, err) = run_bounded(cmd, &dir, "sipp", Duration::from_secs(15));
        let codes = final_codes(&log);
        let code = codes.keys().next().copied();
        if code != Some(200) {
            eprintln!(
                "[e2e {}] REGISTER {contact}: sipp {status:?}, finals {codes:?}, stderr: {}",
                self.name,
                err.trim()
            );
        }
        code
    }

    /// As `terminal_on`, listening on `ip` (127.0.0.1 or ::1) at `port`
    /// (from `free_udp_port()`): e.g. the port a REGISTER came from, for a
    /// terminal behind a NAT (`try_register_from`).
    pub fn terminal_on_at(
        &self,
        transport: Transport,
        (ip, port): (&str, u16),
        name: &str,
        answer: Answer,
    ) -> Terminal {
        Terminal::start_on(
            self,
            name,
            (ip, port, transport),
            answer,
            &[],
            Duration::ZERO,
            Duration::from_secs(300),
        )
    }

    /// Runs a sender to the end (bounded) and returns what it got.
    pub fn send(&self, proxy: &Proxy, send: Send) -> SendResult {
        send.run(self, &proxy.addr())
    }

    /// As `send`, to any address ("127.0.0.1:PORT"), e.g. a terminal directly.
    pub fn send_to(&self, addr: &str, send: Send) -> SendResult {
        send.run(self, addr)
    }

    /// Prints one line per case: the sender's counts and each terminal's.
    pub fn report(&self, r: &SendResult, terminals: &[&Terminal]) {
        let mut line = format!("[e2e {}] sender {}", self.name, r);
        for t in terminals {
            let by = t.received_by_method();
            line.push_str(&format!(
                " | {} ({}) received {} {:?}",
                t.name,
                t.answer.label(),
                t.received(),
                by
            ));
        }
        line.push_str(&format!(
            " | case {:.1}s",
            self.started.elapsed().as_secs_f64()
        ));
        println!("{line}");
    }
}

/// The test CA and certificates of a case (made once per case with the
/// openssl command, under `<case>/tls/`), and Kamailio's tls.cfg for them:
/// the proxy presents `proxy.crt`; as a client it requires and verifies
/// the terminals' certificates (`terminal.crt`, for 127.0.0.1 and ::1)
/// against `ca.crt`. `rogue.crt` is self-signed: a terminal named
/// `rogue*` presents it, and the proxy must refuse the connection.
pub struct TlsFiles {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub tls_cfg: PathBuf,
}

impl Case {
    pub fn tls_files(&self) -> TlsFiles {
        let dir = self.subdir("tls");
        let f = |n: &str| dir.join(n);
        let files = TlsFiles {
            dir: dir.clone(),
            ca: f("ca.crt"),
            tls_cfg: f("tls.cfg"),
        };
        if files.tls_cfg.is_file() {
            return files;
        }
        let openssl = |args: &[&str]| {
            let mut cmd = Command::new("openssl");
            cmd.current_dir(&dir).args(args);
            let (st, _, err) = run_bounded(cmd, &dir, "openssl", Duration::from_secs(30));
            assert!(
                st.is_some_and(|s| s.success()),
                "openssl {args:?}: {st:?} {err}"
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=push_redirect e2e CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        // a terminal certificate of no CA the proxy trusts
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=rogue",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            "rogue.key",
            "-out",
            "rogue.crt",
        ]);
        write_file(
            &f("san.ext"),
            "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n",
        );
        for who in ["proxy", "terminal"] {
            let (key, csr, crt) = (
                format!("{who}.key"),
                format!("{who}.csr"),
                format!("{who}.crt"),
            );
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={who}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                &crt,
            ]);
        }
        let p = |n: &str| f(n).display().to_string();
        write_file(
            &files.tls_cfg,
            &format!(
                "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
                 require_certificate = no\nprivate_key = {}\ncertificate = {}\n\n\
                 [client:default]\nmethod = TLSv1.2+\nverify_certificate = yes\n\
                 require_certificate = yes\nca_list = {}\n",
                p("proxy.key"),
                p("proxy.crt"),
                p("ca.crt")
            ),
        );
        files
    }
}

/// The command of a TLS terminal (`support/tls_terminal.py`) in `dir`,
/// with the case's certificate `who` (`terminal`: of the test CA; `rogue`:
/// self-signed); logs as a sipp terminal does.
fn tls_terminal_cmd(
    case: &Case,
    dir: &Path,
    (ip, port, who): (&str, u16, &str),
    answer: &Answer,
    lifetime: Duration,
) -> Command {
    let tls = case.tls_files();
    let code = match answer {
        Answer::Ok => "200".to_string(),
        Answer::Code(c) => c.to_string(),
        Answer::NoAnswer => "0".to_string(),
        other => panic!("a TLS terminal answers 200, a code or nothing, not {other:?}"),
    };
    let mut cmd = Command::new("python3");
    cmd.current_dir(dir)
        .arg(e2e_dir().join("support").join("tls_terminal.py"))
        .args(["--ip", ip, "--port", &port.to_string(), "--code", &code])
        .arg("--cert")
        .arg(tls.dir.join(format!("{who}.crt")))
        .arg("--key")
        .arg(tls.dir.join(format!("{who}.key")))
        .arg("--log")
        .arg(dir.join("messages.log"))
        .arg("--actions")
        .arg(dir.join("actions.log"))
        .args(["--lifetime", &lifetime.as_secs().to_string()]);
    cmd
}

/// A REGISTER for `try_register_from`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Register<'a> {
    pub aor: &'a str,
    pub contact: &'a str,
    pub q: f32,
    pub expires: u32,
    /// The address and port it is sent from.
    pub from: (&'a str, u16),
    /// Extra header lines (e.g. "Allow: NOTIFY").
    pub extra: &'a [&'a str],
    /// More Contact parameters, e.g. `;+sip.instance="<urn:uuid:...>"`.
    pub cparams: &'a str,
}

impl Drop for Case {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "[e2e {}] FAILED: logs kept in {}",
                self.name,
                self.dir.display()
            );
        } else if std::env::var_os("E2E_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ------------------------------------------------------------------ Proxy

pub struct ProxyBuilder {
    dir: PathBuf,
    case: String,
    cfg: PathBuf,
    port: Option<u16>,
    children: u32,
    defines: Vec<String>,
    args: Vec<String>,
    ready_timeout: Duration,
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
        self.defines.push(format!("{name}={value}"));
        self
    }
    /// `-A NAME="value"` (a string, e.g. a path).
    pub fn define_str(mut self, name: &str, value: &str) -> Self {
        self.defines.push(format!("{name}=\"{value}\""));
        self
    }
    /// `-A NAME` (for `#!ifdef NAME`).
    pub fn flag(mut self, name: &str) -> Self {
        self.defines.push(name.to_string());
        self
    }
    /// Any other kamailio command-line argument.
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }
    pub fn start(self) -> Proxy {
        let port = self.port.unwrap_or_else(free_udp_port);
        let mut p = Proxy {
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
        };
        p.spawn();
        p
    }
}

/// A running Kamailio: `kamailio -DD -E -f CFG` in its own process group,
/// stderr to `kamailio/kamailio.N.log` (N = run number: restarts keep the old logs).
///
/// The cfg receives `-A SIP_PORT=port -A CHILDREN=n -A CTL_SOCK="unix:DIR/ctl"`
/// plus the builder's defines; `-Y DIR/run -w DIR`.
pub struct Proxy {
    pub case: String,
    pub dir: PathBuf,
    pub cfg: PathBuf,
    pub port: u16,
    children: u32,
    defines: Vec<String>,
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

    fn spawn(&mut self) {
        self.runs += 1;
        self.log = self.dir.join(format!("kamailio.{}.log", self.runs));
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
            cmd.args(["-A", d]);
        }
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
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn kamailio: {e}"));
        self.child = Some(child);
        let t0 = Instant::now();
        if let Err(why) = self.wait_ready() {
            self.kill_group(SIGKILL);
            panic!(
                "[e2e {}] kamailio ({}) not ready after {:.1}s: {why}\n--- {} (tail) ---\n{}",
                self.case,
                self.cfg.display(),
                t0.elapsed().as_secs_f64(),
                self.log.display(),
                tail(&self.log, 40)
            );
        }
        println!(
            "[e2e {}] kamailio pid {} on {} ready in {:.2}s (cfg {})",
            self.case,
            self.pid().unwrap(),
            self.addr(),
            t0.elapsed().as_secs_f64(),
            self.cfg.file_name().unwrap_or_default().to_string_lossy()
        );
    }

    /// Ready = it answered a SIP request (any response) on its port. The probe
    /// is `OPTIONS sip:127.0.0.1:PORT` with Max-Forwards: 0, which a cfg
    /// answers with 483 (mf_process_maxfwd_header) or its keepalive 200.
    fn wait_ready(&mut self) -> Result<(), String> {
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let lport = sock.local_addr().unwrap().port();
        let end = Instant::now() + self.ready_timeout;
        let mut n = 0;
        while Instant::now() < end {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("kamailio exited: {st}"));
            }
            if udp_port_bound(self.port) {
                n += 1;
                let msg = format!(
                    "OPTIONS sip:127.0.0.1:{p} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK-probe-{n}\r\n\
                     From: <sip:probe@127.0.0.1>;tag=probe\r\nTo: <sip:127.0.0.1:{p}>\r\nCall-ID: probe-{n}-{lport}@127.0.0.1\r\n\
                     CSeq: {n} OPTIONS\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n",
                    p = self.port
                );
                let _ = sock.send_to(msg.as_bytes(), ("127.0.0.1", self.port));
                let mut buf = [0u8; 4096];
                if let Ok((len, _)) = sock.recv_from(&mut buf) {
                    if buf[..len].starts_with(b"SIP/2.0 ") {
                        return Ok(());
                    }
                }
            } else {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Err(if udp_port_bound(self.port) {
            "no answer to the OPTIONS probe".into()
        } else {
            "port never bound".into()
        })
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
    pub fn rpc(&self, args: &[&str]) -> Result<String, String> {
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

    /// `kamcmd stats.get_statistics GROUP:` (e.g. "push_redirect:", "tmx:") as
    /// name (without the group) -> value. Panics if kamcmd fails.
    pub fn statistics(&self, group: &str) -> BTreeMap<String, i64> {
        let group = if group.ends_with(':') {
            group.to_string()
        } else {
            format!("{group}:")
        };
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

    /// Lines of the current log containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

/// The non-zombie processes of process group `pgid`.
fn group_pids(pgid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid pgrp ...
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() > 2 && f[2] == pgid.to_string() && f[0] != "Z" {
                v.push(pid);
            }
        }
    }
    v
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

// ------------------------------------------------------------------ Terminal

/// The URI a terminal NAME on PORT registers: sip:NAME@127.0.0.1:PORT.
pub fn terminal_uri(name: &str, port: u16) -> String {
    format!("sip:{name}@127.0.0.1:{port}")
}

/// How a terminal answers every request it receives (MESSAGE, NOTIFY, OPTIONS, ...).
#[derive(Clone, Debug)]
#[allow(clippy::enum_variant_names)]
pub enum Answer {
    /// 200 OK
    Ok,
    /// 302 with one Contact: a URI (wrapped in <>) or a full value starting
    /// with '<' (e.g. "<sip:t2@127.0.0.1:5072>;expires=60").
    Redirect302(String),
    /// 301 with one Contact (as Redirect302).
    Redirect301(String),
    /// 302 without Contact.
    Redirect302NoContact,
    /// 300 with exactly three (uri, q) Contacts: the first two in ONE
    /// comma-separated Contact header, the third in a second header.
    Multiple300([(String, String); 3]),
    /// Any code that has a scenarios/uas_CODE.xml (202 300 301 302 305 380 401
    /// 403 404 408 415 480 486 488 500 503 603 606); headers (e.g. Contact,
    /// Expires) via `Case::terminal_with`.
    Code(u16),
    /// 401 with a Digest WWW-Authenticate challenge.
    Unauthorized401,
    /// Receives, never replies: the proxy's tm times the branch out (408).
    NoAnswer,
}

impl Answer {
    pub fn label(&self) -> String {
        match self {
            Answer::Ok => "200".into(),
            Answer::Redirect302(_) => "302+Contact".into(),
            Answer::Redirect301(_) => "301+Contact".into(),
            Answer::Redirect302NoContact => "302 no Contact".into(),
            Answer::Multiple300(_) => "300 x3".into(),
            Answer::Code(c) => c.to_string(),
            Answer::Unauthorized401 => "401".into(),
            Answer::NoAnswer => "no answer".into(),
        }
    }

    fn scenario_and_keys(&self) -> (String, Vec<(String, String)>) {
        fn contact(c: &str) -> String {
            if c.starts_with('<') {
                c.to_string()
            } else {
                format!("<{c}>")
            }
        }
        match self {
            Answer::Ok => ("uas_200.xml".into(), vec![]),
            Answer::Redirect302(c) => (
                "uas_302_contact.xml".into(),
                vec![("contact".into(), contact(c))],
            ),
            Answer::Redirect301(c) => (
                "uas_301_contact.xml".into(),
                vec![("contact".into(), contact(c))],
            ),
            Answer::Redirect302NoContact => ("uas_302_nocontact.xml".into(), vec![]),
            Answer::Multiple300(cs) => {
                let mut k = Vec::new();
                for (i, (u, q)) in cs.iter().enumerate() {
                    k.push((format!("c{}", i + 1), u.clone()));
                    k.push((format!("q{}", i + 1), q.clone()));
                }
                ("uas_300_multi.xml".into(), k)
            }
            Answer::Code(c) => (format!("uas_{c}.xml"), vec![]),
            Answer::Unauthorized401 => ("uas_401.xml".into(), vec![]),
            Answer::NoAnswer => ("uas_noanswer.xml".into(), vec![]),
        }
    }
}

/// A request as a terminal received it (from its sipp message log).
#[derive(Clone, Debug)]
pub struct Request {
    /// when sipp read it: "YYYY-MM-DD HH:MM:SS.micros" (sorts in time order)
    pub at: String,
    pub method: String,
    pub ruri: String,
    /// (name as sent, value), in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    /// First value of a header (case-insensitive; compact forms v i f t m e c l k).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_named(name).into_iter().next()
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let compact = match name.to_ascii_lowercase().as_str() {
            "via" => "v",
            "call-id" => "i",
            "from" => "f",
            "to" => "t",
            "contact" => "m",
            "event" => "o",
            "content-type" => "c",
            "content-length" => "l",
            "supported" => "k",
            _ => "",
        };
        self.headers
            .iter()
            .filter(|(n, _)| {
                n.eq_ignore_ascii_case(name)
                    || (!compact.is_empty() && n.eq_ignore_ascii_case(compact))
            })
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or("")
    }
    /// branch parameter of the top Via.
    pub fn top_branch(&self) -> String {
        let via = self.header("Via").unwrap_or("");
        let top = via.split(',').next().unwrap_or("");
        top.split(';')
            .find_map(|p| p.trim().strip_prefix("branch="))
            .unwrap_or("")
            .to_string()
    }
}

/// Parses a sipp `-trace_msg` file: the requests it received.
pub fn parse_received_requests(path: &Path) -> Vec<Request> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for block in text.split("\n-----------------------------------------------") {
        // block: " <date>\nUDP message received [N] bytes :\n\n<message>"
        let mut lines = block.splitn(3, '\n');
        let at = lines
            .next()
            .unwrap_or("")
            .trim_start_matches('-')
            .trim()
            .to_string();
        let kind = lines.next().unwrap_or("");
        let Some(msg) = lines.next() else { continue };
        if !kind.contains("message received") {
            continue;
        }
        let msg = msg.trim_start_matches(['\n', '\r']);
        let (head, body) = match msg.find("\r\n\r\n") {
            Some(i) => (&msg[..i], msg[i + 4..].trim_end().to_string()),
            None => (msg.trim_end(), String::new()),
        };
        let mut hl = head.split("\r\n");
        let first = hl.next().unwrap_or("");
        if first.starts_with("SIP/2.0") {
            continue; // a response
        }
        let mut parts = first.split_whitespace();
        let (Some(method), Some(ruri)) = (parts.next(), parts.next()) else {
            continue;
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        for l in hl {
            if (l.starts_with(' ') || l.starts_with('\t')) && !headers.is_empty() {
                let last = headers.last_mut().unwrap();
                last.1.push(' ');
                last.1.push_str(l.trim());
            } else if let Some((n, v)) = l.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        out.push(Request {
            at,
            method: method.to_string(),
            ruri: ruri.to_string(),
            headers,
            body,
        });
    }
    out
}

/// A sipp UAS on 127.0.0.1:port (its own process, killed and reaped on Drop).
pub struct Terminal {
    pub name: String,
    pub port: u16,
    pub transport: Transport,
    pub answer: Answer,
    pub dir: PathBuf,
    child: Option<Child>,
    /// The address its sipp listens on: 127.0.0.1, or ::1 (`terminal_on_ip`).
    pub ip: String,
}

impl Terminal {
    fn start(
        case: &Case,
        name: &str,
        (port, transport): (u16, Transport),
        answer: Answer,
        extra_headers: &[&str],
        delay: Duration,
        lifetime: Duration,
    ) -> Terminal {
        Terminal::start_on(
            case,
            name,
            ("127.0.0.1", port, transport),
            answer,
            extra_headers,
            delay,
            lifetime,
        )
    }

    fn start_on(
        case: &Case,
        name: &str,
        (ip, port, transport): (&str, u16, Transport),
        answer: Answer,
        extra_headers: &[&str],
        delay: Duration,
        lifetime: Duration,
    ) -> Terminal {
        assert!(
            !case.dir.join(format!("uas-{name}")).exists(),
            "terminal name {name} used twice in case {}",
            case.name
        );
        let dir = case.subdir(&format!("uas-{name}"));
        let (sf, keys) = answer.scenario_and_keys();
        let sf = scenario(&sf);
        assert!(
            sf.is_file(),
            "no scenario {} for {answer:?}: add the code to scenarios/generate.py",
            sf.display()
        );
        let extra: String = extra_headers.iter().map(|h| format!("\r\n{h}")).collect();
        let mut cmd = Command::new(sipp_bin());
        if transport == Transport::Tls {
            // a terminal named rogue* presents a certificate of no CA the
            // proxy trusts
            let who = if name.starts_with("rogue") {
                "rogue"
            } else {
                "terminal"
            };
            cmd = tls_terminal_cmd(case, &dir, (ip, port, who), &answer, lifetime);
        } else {
            cmd.current_dir(&dir).arg("-sf").arg(&sf);
            for (k, v) in &keys {
                cmd.args(["-key", k, v]);
            }
            cmd.args(["-key", "extra", &extra])
                .args(["-i", ip, "-p", &port.to_string()])
                .args(["-t", transport.sipp_mode()])
                .args(["-d", &delay.as_millis().to_string()])
                .args(["-nostdin", "-timeout", &format!("{}s", lifetime.as_secs())])
                .arg("-trace_logs")
                .arg("-log_file")
                .arg(dir.join("actions.log"))
                .arg("-trace_msg")
                .arg("-message_file")
                .arg(dir.join("messages.log"))
                .arg("-trace_err")
                .arg("-error_file")
                .arg(dir.join("errors.log"))
                .arg("-trace_stat")
                .arg("-stf")
                .arg(dir.join("stats.csv"))
                .args(["-fd", "1"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("sipp.stdout")).unwrap())
            .stderr(fs::File::create(dir.join("sipp.stderr")).unwrap())
            .process_group(0);
        die_with_parent(&mut cmd);
        fs::write(dir.join("cmdline"), format!("{cmd:?}\n")).ok();
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn sipp: {e}"));
        let mut t = Terminal {
            name: name.to_string(),
            port,
            transport,
            answer,
            dir,
            child: Some(child),
            ip: ip.to_string(),
        };
        let on = |port| {
            if ip == "::1" {
                transport.bound_v6(port)
            } else {
                transport.bound(port)
            }
        };
        let bound = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
            on(port) || matches!(t.child.as_mut().unwrap().try_wait(), Ok(Some(_)))
        });
        if !bound || !on(port) {
            let err = fs::read_to_string(t.dir.join("sipp.stderr")).unwrap_or_default();
            panic!(
                "[e2e {}] terminal {name} (sipp on {port}) did not start: {}",
                case.name,
                err.trim()
            );
        }
        t
    }

    /// sip:NAME@127.0.0.1:PORT
    pub fn uri(&self) -> String {
        let base = if self.ip == "::1" {
            format!("sip:{}@[::1]:{}", self.name, self.port)
        } else {
            terminal_uri(&self.name, self.port)
        };
        format!("{base}{}", self.transport.uri_param())
    }

    /// Every request received, retransmissions included, in order.
    pub fn requests_raw(&self) -> Vec<Request> {
        parse_received_requests(&self.dir.join("messages.log"))
    }

    /// The distinct requests received (first copy of each Call-ID + top Via branch).
    pub fn requests(&self) -> Vec<Request> {
        let mut seen = HashSet::new();
        self.requests_raw()
            .into_iter()
            .filter(|r| seen.insert((r.call_id().to_string(), r.top_branch())))
            .collect()
    }

    /// Number of distinct requests received (see module doc).
    pub fn received(&self) -> usize {
        self.requests().len()
    }

    pub fn received_by_method(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for r in self.requests() {
            *m.entry(r.method).or_insert(0) += 1;
        }
        m
    }

    /// Distinct Call-IDs received.
    pub fn received_call_ids(&self) -> BTreeSet<String> {
        self.requests()
            .into_iter()
            .map(|r| r.call_id().to_string())
            .collect()
    }

    /// Requests whose scenario ran (one `<log>` line each).
    pub fn handled(&self) -> usize {
        fs::read_to_string(self.dir.join("actions.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("RECV "))
            .count()
    }

    /// Waits (at most 5 s) until `received() >= n`, then until it stops
    /// changing for 300 ms; returns it. A terminal's sipp may read its
    /// datagram after the sender already has its final response.
    pub fn wait_received(&self, n: usize) -> usize {
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            self.received() >= n
        });
        self.settled()
    }

    /// `received()` once it has not changed for 300 ms (at most 3 s).
    pub fn settled(&self) -> usize {
        let end = Instant::now() + Duration::from_secs(3);
        let mut last = self.received();
        let mut since = Instant::now();
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.received();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= Duration::from_millis(300) {
                break;
            }
        }
        last
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_child(&mut c);
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.stop();
    }
}

// ------------------------------------------------------------------ sender

/// A sipp UAC sending `count` requests (one per call, each its own Call-ID)
/// to the proxy and expecting one final response each.
#[derive(Clone, Debug)]
pub struct Send {
    pub scenario: &'static str,
    pub ruri: String,
    pub count: u32,
    /// calls per second
    pub rate: u32,
    pub ctype: String,
    pub event: String,
    pub totag: String,
    pub headers: Vec<String>,
    /// per request: no final response within this → counted as a timeout
    pub recv_timeout: Duration,
}

impl Send {
    fn new(scenario: &'static str, ruri: &str) -> Send {
        Send {
            scenario,
            ruri: ruri.to_string(),
            count: 50,
            rate: 100,
            ctype: "text/plain".into(),
            event: "x".into(),
            totag: "e2e-dialog-tag".into(),
            headers: Vec::new(),
            recv_timeout: Duration::from_secs(10),
        }
    }
    /// Out-of-dialog MESSAGE (Content-Type text/plain unless `.ctype()`).
    pub fn message(ruri: &str) -> Send {
        Send::new("sender_message.xml", ruri)
    }
    /// Out-of-dialog NOTIFY with `Event: event`.
    pub fn notify(ruri: &str, event: &str) -> Send {
        let mut s = Send::new("sender_notify.xml", ruri);
        s.event = event.into();
        s.ctype = "application/simple-message-summary".into();
        s
    }
    /// In-dialog NOTIFY (To-tag) with `Event: event`.
    pub fn notify_in_dialog(ruri: &str, event: &str) -> Send {
        let mut s = Send::notify(ruri, event);
        s.scenario = "sender_notify_indialog.xml";
        s
    }
    /// Out-of-dialog OPTIONS (not a PUSH method).
    pub fn options(ruri: &str) -> Send {
        Send::new("sender_options.xml", ruri)
    }
    pub fn count(mut self, n: u32) -> Self {
        self.count = n;
        self
    }
    pub fn rate(mut self, cps: u32) -> Self {
        self.rate = cps.max(1);
        self
    }
    pub fn ctype(mut self, t: &str) -> Self {
        self.ctype = t.into();
        self
    }
    pub fn header(mut self, h: &str) -> Self {
        self.headers.push(h.into());
        self
    }
    pub fn recv_timeout(mut self, d: Duration) -> Self {
        self.recv_timeout = d;
        self
    }

    fn run(&self, case: &Case, target: &str) -> SendResult {
        let slow = std::env::var("E2E_SLOW")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&k| k > 1);
        let scaled;
        let this = match slow {
            Some(k) => {
                scaled = Send {
                    rate: (self.rate / k).max(1),
                    recv_timeout: self.recv_timeout * k,
                    ..self.clone()
                };
                &scaled
            }
            None => self,
        };
        this.run_as_is(case, target)
    }

    fn run_as_is(&self, case: &Case, target: &str) -> SendResult {
        let n = CASE_SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = case.subdir(&format!("sender-{n}"));
        let port = free_udp_port();
        let extra: String = self.headers.iter().map(|h| format!("\r\n{h}")).collect();
        // sending takes count/rate; the last request may wait recv_timeout
        let budget = Duration::from_millis(1000 * self.count as u64 / self.rate as u64)
            + self.recv_timeout
            + Duration::from_secs(5);
        let log = dir.join("actions.log");
        let stats = dir.join("stats.csv");
        let errors = dir.join("errors.log");
        let mut cmd = Command::new(sipp_bin());
        cmd.current_dir(&dir)
            .arg("-sf")
            .arg(scenario(self.scenario))
            .args([
                "-key",
                "ruri",
                &self.ruri,
                "-key",
                "ctype",
                &self.ctype,
                "-key",
                "event",
                &self.event,
            ])
            .args(["-key", "totag", &self.totag, "-key", "extra", &extra])
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .arg(target)
            .args([
                "-m",
                &self.count.to_string(),
                "-r",
                &self.rate.to_string(),
                "-rp",
                "1000",
            ])
            .args(["-recv_timeout", &self.recv_timeout.as_millis().to_string()])
            .args([
                "-timeout",
                &format!("{}s", budget.as_secs() + 1),
                "-nostdin",
            ])
            .arg("-trace_logs")
            .arg("-log_file")
            .arg(&log)
            .arg("-trace_stat")
            .arg("-stf")
            .arg(&stats)
            .args(["-fd", "1"])
            .arg("-trace_err")
            .arg("-error_file")
            .arg(&errors)
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.join("messages.log"));
        fs::write(dir.join("cmdline"), format!("{cmd:?}\n")).ok();
        let t0 = Instant::now();
        let (status, _, stderr) = run_bounded(cmd, &dir, "sipp", budget + Duration::from_secs(10));
        let elapsed = t0.elapsed();
        let status = status.unwrap_or_else(|| {
            panic!(
                "[e2e {}] sender {} did not finish within {:?}; see {}",
                case.name,
                self.scenario,
                budget,
                dir.display()
            )
        });
        let st = last_stats(&stats);
        let get = |k: &str| st.get(k).copied().unwrap_or(0);
        let r = SendResult {
            scenario: self.scenario,
            requested: self.count as u64,
            exit_code: status.code(),
            codes: final_codes(&log),
            created: get("OutgoingCall(C)"),
            successful: get("SuccessfulCall(C)"),
            failed: get("FailedCall(C)"),
            timeouts: get("FailedTimeoutOnRecv(C)") + get("FailedMaxUDPRetrans(C)"),
            unexpected: get("FailedUnexpectedMessage(C)"),
            unexpected_codes: unexpected_codes(&errors),
            retransmissions: get("Retransmissions(C)"),
            elapsed,
            dir,
        };
        if r.created != r.requested {
            eprintln!(
                "[e2e {}] sender created {} of {} calls; stderr: {}",
                case.name,
                r.created,
                r.requested,
                stderr.trim()
            );
        }
        r
    }
}

/// `FINAL <code> <call-id>` lines of a sender's/registrar's action log → code → count.
/// A Call-ID counted twice would be a bug in sipp or the scenario: it panics.
fn final_codes(log: &Path) -> BTreeMap<u16, u64> {
    let text = fs::read_to_string(log).unwrap_or_default();
    let mut m = BTreeMap::new();
    let mut seen = HashSet::new();
    for l in text.lines() {
        let mut p = l.split_whitespace();
        if p.next() != Some("FINAL") {
            continue;
        }
        let (Some(code), Some(cid)) = (p.next().and_then(|c| c.parse::<u16>().ok()), p.next())
        else {
            continue;
        };
        assert!(
            seen.insert(cid.to_string()),
            "two final responses logged for Call-ID {cid} in {}",
            log.display()
        );
        *m.entry(code).or_insert(0) += 1;
    }
    m
}

/// Last row of a sipp `-trace_stat` CSV → column → value (integers only).
fn last_stats(path: &Path) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(head) = lines.next() else { return m };
    let Some(last) = lines.next_back() else {
        return m;
    };
    for (k, v) in head.split(';').zip(last.split(';')) {
        if let Ok(n) = v.trim().parse::<u64>() {
            m.insert(k.trim().to_string(), n);
        }
    }
    m
}

/// Status codes of the unexpected responses in a sipp `-trace_err` file.
fn unexpected_codes(path: &Path) -> BTreeMap<u16, u64> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut m = BTreeMap::new();
    // "... Aborting call on unexpected message for Call-Id '...': while expecting
    // '100' (index 1), received 'SIP/2.0 499 Odd" (then the rest of the message)
    for l in text.lines() {
        if let Some(i) = l.find("received 'SIP/2.0 ") {
            let rest = &l[i + "received 'SIP/2.0 ".len()..];
            if let Some(c) = rest.get(..3).and_then(|c| c.parse::<u16>().ok()) {
                *m.entry(c).or_insert(0) += 1;
            }
        }
    }
    m
}

/// What a sender got.
#[derive(Debug)]
pub struct SendResult {
    pub scenario: &'static str,
    pub requested: u64,
    /// sipp: 0 every call got a 2xx, 1 some did not, 97/99/255/254 see sipp(1)
    pub exit_code: Option<i32>,
    /// final response code → number of requests that got it (from the scenario's log)
    pub codes: BTreeMap<u16, u64>,
    /// calls sipp created (= requests sent, retransmissions not counted)
    pub created: u64,
    pub successful: u64,
    pub failed: u64,
    /// no final response within recv_timeout / max UDP retransmissions
    pub timeouts: u64,
    /// final responses with a code the scenario does not list
    pub unexpected: u64,
    pub unexpected_codes: BTreeMap<u16, u64>,
    pub retransmissions: u64,
    pub elapsed: Duration,
    pub dir: PathBuf,
}

impl SendResult {
    /// Requests that got final response `code`.
    pub fn count(&self, code: u16) -> u64 {
        self.codes.get(&code).copied().unwrap_or(0)
    }
    /// Requests that got any final response the scenario lists.
    pub fn finals(&self) -> u64 {
        self.codes.values().sum()
    }
    /// Asserts every one of the `requested` requests got exactly `code`.
    #[track_caller]
    pub fn assert_all(&self, code: u16) {
        let mut want = BTreeMap::new();
        want.insert(code, self.requested);
        assert_eq!(
            self.codes, want,
            "sender: expected {}x{code}; got {self}",
            self.requested
        );
        assert_eq!(
            self.created, self.requested,
            "sender created {} calls, wanted {}",
            self.created, self.requested
        );
        assert_eq!(self.timeouts, 0, "sender: timeouts");
        assert_eq!(
            self.unexpected, 0,
            "sender: unexpected responses {:?}",
            self.unexpected_codes
        );
        let want_exit = if (200..300).contains(&code) { 0 } else { 1 };
        assert_eq!(self.exit_code, Some(want_exit), "sipp exit code; {self}");
    }
}

impl fmt::Display for SendResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<String> = self.codes.iter().map(|(c, n)| format!("{c}x{n}")).collect();
        write!(
            f,
            "{}: sent {}/{} finals [{}] ok {} failed {} timeouts {} unexpected {}{} retrans {} exit {:?} in {:.2}s",
            self.scenario.trim_end_matches(".xml"),
            self.created,
            self.requested,
            codes.join(" "),
            self.successful,
            self.failed,
            self.timeouts,
            self.unexpected,
            if self.unexpected_codes.is_empty() { String::new() } else { format!(" {:?}", self.unexpected_codes) },
            self.retransmissions,
            self.exit_code,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Writes `text` to `path` (helper for tests that generate a cfg).
pub fn write_file(path: &Path, text: &str) {
    let mut f = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(text.as_bytes()).unwrap();
}

impl ProxyBuilder {
    /// Its own folder `name` under the case's (default `kamailio`): for a
    /// second Kamailio in one case (its log, ctl socket and run files).
    pub fn in_dir(mut self, name: &str) -> Self {
        if let Some(case_dir) = self.dir.parent() {
            self.dir = case_dir.join(name);
            fs::create_dir_all(&self.dir).unwrap();
        }
        self
    }
}
