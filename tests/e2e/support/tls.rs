//! The test CA, the proxy's tls.cfg and the TLS terminal
//! (`support/tls_terminal.py`: Debian's sipp has no TLS).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{run_bounded, write_file};
use super::*;

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
pub(super) fn tls_terminal_cmd(
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
