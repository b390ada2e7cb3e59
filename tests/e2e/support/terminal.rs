//! Terminals: a sipp UAS each (or the TLS terminal), and the requests they
//! received, parsed from sipp's message log.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::*;
use super::tls::tls_terminal_cmd;
use super::*;

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

    pub(super) fn scenario_and_keys(&self) -> (String, Vec<(String, String)>) {
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
    pub(super) fn start(
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

    pub(super) fn start_on(
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
