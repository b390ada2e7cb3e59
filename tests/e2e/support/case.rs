//! `Case`: one test's scratch folder and the factory of what it runs.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;

pub(super) static CASE_SEQ: AtomicUsize = AtomicUsize::new(0);

/// One test case: a scratch directory (kept when the test fails) and the
/// factory of the processes it runs. The processes are owned by the values
/// it returns (`Proxy`, `Terminal`), which kill them on Drop.
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    started: Instant,
}

impl Case {
    /// Under `E2E_PROXY=opensips`, panics unless the running test is one
    /// of `tests/e2e/shared-cases.txt` (a Kamailio-only case must not pass
    /// there without having run).
    pub fn new(name: &str) -> Case {
        require_tools();
        if proxy_kind() == ProxyKind::Opensips {
            require_shared(name);
        }
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

    pub(super) fn subdir(&self, name: &str) -> PathBuf {
        let d = self.dir.join(name);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// The proxy under test (`E2E_PROXY`: Kamailio, or OpenSIPS) with
    /// `cfg` (a name under tests/e2e/cfg/, under cfg/opensips/ for
    /// OpenSIPS, or a path), in the case's folder `kamailio` or `opensips`.
    pub fn proxy(&self, cfg: &str) -> ProxyBuilder {
        self.proxy_in(cfg, proxy_kind().name())
    }

    /// As `proxy`, in the case's folder `dir` (a second Kamailio of the
    /// case, e.g. an edge proxy, needs its own).
    pub fn proxy_in(&self, cfg: &str, dir: &str) -> ProxyBuilder {
        let kind = proxy_kind();
        ProxyBuilder {
            kind,
            cfg: kind.cfg_path(cfg),
            dir: self.subdir(dir),
            case: self.name.clone(),
            port: None,
            children: 4,
            defines: Vec::new(),
            args: Vec::new(),
            // E2E_READY_SECS: more time to start (a proxy under valgrind).
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

/// The cases that run on both proxies: `tests/e2e/shared-cases.txt`, one
/// test path (`module::function`) per line, `#` comments.
pub fn shared_cases() -> Vec<String> {
    let path = e2e_dir().join("shared-cases.txt");
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Panics unless the running test (libtest names its thread after the
/// test's path) is a shared case.
fn require_shared(name: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("");
    if !shared_cases().iter().any(|c| c == test) {
        panic!(
            "[e2e {name}] {test:?} is a Kamailio-only case: E2E_PROXY=opensips runs only \
             the cases of tests/e2e/shared-cases.txt (tests/e2e/README.md says why the \
             others are Kamailio-only)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_cases_name_existing_cases() {
        let cases = shared_cases();
        assert!(!cases.is_empty());
        for c in &cases {
            let (file, func) = match c.rsplit_once("::") {
                Some((m, f)) => (format!("{m}.rs"), f),
                None => ("main.rs".to_string(), c.as_str()),
            };
            let src = fs::read_to_string(e2e_dir().join(&file))
                .unwrap_or_else(|e| panic!("shared case {c}: {file}: {e}"));
            assert!(
                src.contains(&format!("fn {func}()")),
                "shared case {c}: no fn {func}() in {file}"
            );
        }
    }
}
