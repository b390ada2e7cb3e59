//! REGISTERs: a sipp UAC per REGISTER, its final response code.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::case::CASE_SEQ;
use super::process::run_bounded;
use super::sender::final_codes;
use super::*;

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

impl Case {
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
}
