//! push_redirect added to the stock kamailio.cfg of the Kamailio under test
//! by `cfg-examples/stock-cfg-add-push-redirect.sh`, behind
//! `#!define WITH_PUSH_REDIRECT` (here `-A WITH_PUSH_REDIRECT`): F1 through
//! it, and the same file without the define routes as stock does.
//!
//! The stock file is read at test time: the installed package's
//! /etc/kamailio/kamailio.cfg when it is as the package shipped it (its
//! md5sum is dpkg's record of the conffile), else the one in the source of
//! that package version (`.cache/kamailio-src/`, what `make build` fetched);
//! for a Kamailio built from source (`make test-versions`), the one it
//! installed under its prefix; `STOCK_CFG=<file>` picks one. Only the copy
//! is changed: the script, then two lines the stock file has commented out,
//! uncommented (an alias for example.com, the ctl socket under the case's
//! folder); the case's port comes with `-l`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::push::f1_explicit_redirect_302;
use crate::support::*;

const N: u32 = 50;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The stock kamailio.cfg of the Kamailio under test, and where it came from.
fn stock_cfg() -> (PathBuf, String) {
    if let Some(p) = std::env::var_os("STOCK_CFG") {
        return (PathBuf::from(p), "STOCK_CFG".into());
    }
    let bin = fs::canonicalize(kamailio_bin()).expect("kamailio binary");
    let packaged = output("dpkg", &["-S", &bin.display().to_string()]).is_some();
    if !packaged {
        // a source build: <prefix>/sbin/kamailio, <prefix>/etc/kamailio/kamailio.cfg
        let p = bin
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("etc/kamailio/kamailio.cfg"))
            .expect("prefix");
        assert!(p.is_file(), "{} missing", p.display());
        return (
            p,
            format!("installed by the source build of {}", bin.display()),
        );
    }
    let conffile = Path::new("/etc/kamailio/kamailio.cfg");
    let recorded = output("dpkg-query", &["-W", "-f=${Conffiles}", "kamailio"])
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("/etc/kamailio/kamailio.cfg"))
                .then(|| w.next().unwrap_or("").to_string())
        });
    let actual = output("md5sum", &[&conffile.display().to_string()])
        .and_then(|o| o.split_whitespace().next().map(str::to_string));
    if recorded.is_some() && recorded == actual {
        return (
            conffile.to_path_buf(),
            "the kamailio package's, as shipped".into(),
        );
    }
    // changed on this machine: the same file from the package's source
    let version = output("dpkg-query", &["-W", "-f=${Version}", "kamailio"]).expect("kamailio");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".cache/kamailio-src")
        .join(version.trim());
    let src = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (make build fetches it)", dir.display()))
        .flatten()
        .map(|e| e.path().join("etc/kamailio.cfg"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no etc/kamailio.cfg under {}", dir.display()));
    (
        src,
        format!(
            "{} differs from the package's: the package source's copy",
            conffile.display()
        ),
    )
}

/// The stock file with push_redirect added by the example's script, and
/// the case's alias and ctl socket uncommented.
fn patched_stock_cfg(case: &Case) -> PathBuf {
    let (stock, from) = stock_cfg();
    println!("[e2e stock_cfg] stock file {} ({from})", stock.display());
    let out = case.dir.join("kamailio.cfg");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("cfg-examples/stock-cfg-add-push-redirect.sh");
    let st = Command::new("sh")
        .arg(&script)
        .arg(&stock)
        .arg(&out)
        .status()
        .expect("sh");
    assert!(st.success(), "{} failed", script.display());
    let text = fs::read_to_string(&out).unwrap();
    let mut n = 0;
    let text: String = text
        .lines()
        .map(|l| match l {
            "# alias=\"sip.mydomain.com\"" => {
                n += 1;
                "alias=\"example.com\"".to_string()
            }
            "# modparam(\"ctl\", \"binrpc\", \"unix:/run/kamailio/kamailio_ctl\")" => {
                n += 1;
                "modparam(\"ctl\", \"binrpc\", CTL_SOCK)".to_string()
            }
            _ => l.to_string(),
        })
        .map(|l| l + "\n")
        .collect();
    assert_eq!(
        n, 2,
        "the stock file has the alias and ctl lines commented out"
    );
    write_file(&out, &text);
    out
}

fn stock_proxy(case: &Case, cfg: &Path, with_push_redirect: bool) -> Proxy {
    let m = pr_module_path();
    assert!(m.exists(), "{} missing: run `make build`", m.display());
    let port = free_udp_port();
    let mut b = case
        .proxy(&cfg.display().to_string())
        .port(port)
        .arg("-l")
        .arg(&format!("udp:127.0.0.1:{port}"))
        .define_str("PUSH_REDIRECT_MODULE", &m.display().to_string())
        .define_str(
            "PUSH_REDIRECT_STORE",
            &format!("{}/store.sqlite", case.dir.display()),
        );
    if with_push_redirect {
        b = b.flag("WITH_PUSH_REDIRECT");
    }
    b.start()
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn stock_cfg_with_push_redirect_f1() {
    let case = Case::new("stock_cfg_with_push_redirect_f1");
    let cfg = patched_stock_cfg(&case);
    let p = stock_proxy(&case, &cfg, true);
    f1_explicit_redirect_302(&case, &p);
}

/// The control: the same file without WITH_PUSH_REDIRECT is the stock
/// routing: lookup("location") and t_relay(), no failure route for a
/// MESSAGE, so t1's 302 goes back to the sender and t2 (registered for
/// another AOR) gets nothing; and the module is not loaded.
#[test]
#[ignore = "needs Kamailio: run via make test"]
fn stock_cfg_without_the_define_routes_as_stock() {
    let case = Case::new("stock_cfg_without_the_define");
    let cfg = patched_stock_cfg(&case);
    let p = stock_proxy(&case, &cfg, false);
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect302(t2.uri()));
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, "sip:u2@example.com", &t2, 1.0, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2]);
    assert_eq!(r.count(302), u64::from(N), "{:?}", r.codes);
    assert_eq!(r.finals(), u64::from(N), "{:?}", r.codes);
    assert_eq!(t1.wait_received(N as usize), N as usize);
    assert_eq!(t2.settled(), 0);
    assert!(
        p.rpc(&["push_redirect.list"]).is_err(),
        "no push_redirect module without the define"
    );
}
