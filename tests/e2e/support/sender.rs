//! The sender (a sipp UAC) and what it got (`SendResult`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::case::CASE_SEQ;
use super::process::run_bounded;
use super::*;

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

    pub(super) fn run(&self, case: &Case, target: &str) -> SendResult {
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
pub(super) fn final_codes(log: &Path) -> BTreeMap<u16, u64> {
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
