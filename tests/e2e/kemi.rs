//! push_redirect's KEMI exports through a real Kamailio (children=4): the
//! routing scripts of `cfg-examples/` in Lua (app_lua) and Python
//! (app_python3), loaded by `cfg-examples/push-redirect-kemi.cfg`, run F1,
//! F2 and F6 with exact counts; the `_mode` variants are shown by wrappers
//! that load the same example script and swap `KSR.push_redirect.push_lookup`
//! (or `push_redirect`) for `push_lookup_mode("parallel")` (or
//! `push_redirect_mode("parallel")`).
//!
//! Needs Debian's kamailio-lua-modules and kamailio-python3-modules
//! (`scripts/install-deps.sh test` installs them).

use std::path::{Path, PathBuf};

use crate::push::{f1_explicit_redirect_302, stat};
use crate::support::*;

const N: u32 = 50;

#[derive(Clone, Copy)]
enum Engine {
    Lua,
    Python,
}

impl Engine {
    fn script(self) -> PathBuf {
        let name = match self {
            Engine::Lua => "push-redirect.lua",
            Engine::Python => "push-redirect.py",
        };
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("cfg-examples")
            .join(name)
    }
}

fn kemi_cfg() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cfg-examples/push-redirect-kemi.cfg")
}

/// Kamailio with the KEMI cfg of cfg-examples/ and `script` as its routing,
/// the module from build/ and a store in the case's folder.
fn kemi_proxy(case: &Case, engine: Engine, script: &Path) -> Proxy {
    let m = pr_module_path();
    assert!(m.exists(), "{} missing: run `make build`", m.display());
    let mut b = case
        .proxy(&kemi_cfg().display().to_string())
        .children(4)
        .define_str("PR_MODULE", &m.display().to_string())
        .define_str("PR_STORE", &format!("{}/store.sqlite", case.dir.display()))
        .define_str("PR_SCRIPT", &script.display().to_string());
    if let Engine::Python = engine {
        b = b.flag("WITH_PYTHON");
    }
    b.start()
}

/// A script that runs the example `engine` script unchanged, with
/// KSR.push_redirect.`func` replaced by `func`_mode("parallel"): written
/// into the case's folder.
fn parallel_wrapper(case: &Case, engine: Engine, func: &str) -> PathBuf {
    let example = engine.script();
    let (name, text) = match engine {
        Engine::Lua => (
            "parallel.lua",
            format!(
                "-- the example, with {func}() in parallel mode\n\
                 dofile(\"{ex}\")\n\
                 KSR.push_redirect.{func} = function()\n\
                 \treturn KSR.push_redirect.{func}_mode(\"parallel\")\n\
                 end\n",
                ex = example.display()
            ),
        ),
        Engine::Python => (
            "parallel.py",
            format!(
                "# the example, with {func}() in parallel mode\n\
                 import importlib.util\n\
                 import sys\n\
                 import KSR\n\
                 sys.dont_write_bytecode = True  # no __pycache__ beside the example\n\
                 _spec = importlib.util.spec_from_file_location(\"example\", \"{ex}\")\n\
                 _example = importlib.util.module_from_spec(_spec)\n\
                 _spec.loader.exec_module(_example)\n\
                 KSR.push_redirect.{func} = lambda: KSR.push_redirect.{func}_mode(\"parallel\")\n\
                 mod_init = _example.mod_init\n",
                ex = example.display()
            ),
        ),
    };
    let path = case.dir.join(name);
    write_file(&path, &text);
    path
}

fn f1(name: &str, engine: Engine) {
    let case = Case::new(name);
    let p = kemi_proxy(&case, engine, &engine.script());
    f1_explicit_redirect_302(&case, &p);
}

fn f2(name: &str, engine: Engine) {
    let case = Case::new(name);
    let p = kemi_proxy(&case, engine, &engine.script());
    let t1 = case.terminal("t1", Answer::Code(480));
    let t2 = case.terminal("t2", Answer::Redirect302NoContact);
    let t3 = case.terminal("t3", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.7, 3600);
    case.register(&p, AOR, &t3, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2, &t3]);
    r.assert_all(200);
    for t in [&t1, &t2, &t3] {
        assert_eq!(t.wait_received(N as usize), N as usize);
    }
    assert_eq!(stat(&p, "failovers"), i64::from(2 * N));
}

fn f6(name: &str, engine: Engine) {
    let case = Case::new(name);
    let p = kemi_proxy(&case, engine, &engine.script());
    let t2 = case.terminal("t2", Answer::Ok);
    let t1 = case.terminal("t1", Answer::Redirect301(t2.uri()));
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.5, 3600);
    // The learning request: t1 redirects permanently.
    let r = case.send(&p, Send::message(AOR).count(1));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t1.wait_received(1), 1);
    assert_eq!(stat(&p, "forwardings_learned"), 1);
    // Then straight to t2, from every worker: t1 never again.
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2]);
    r.assert_all(200);
    assert_eq!(t2.wait_received(N as usize + 1), N as usize + 1);
    assert_eq!(t1.settled(), 1, "the redirecting terminal got no more");
    assert_eq!(stat(&p, "forwardings_applied"), i64::from(N));
}

/// push_lookup_mode("parallel"): all three terminals at once; t2's 200
/// ends the transaction, so no failure route runs and nothing fails over.
fn lookup_mode(name: &str, engine: Engine) {
    let case = Case::new(name);
    let script = parallel_wrapper(&case, engine, "push_lookup");
    let p = kemi_proxy(&case, engine, &script);
    let t1 = case.terminal("t1", Answer::Code(480));
    let t2 = case.terminal("t2", Answer::Ok);
    let t3 = case.terminal("t3", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.7, 3600);
    case.register(&p, AOR, &t3, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2, &t3]);
    r.assert_all(200);
    for t in [&t1, &t2, &t3] {
        assert_eq!(t.wait_received(N as usize), N as usize);
    }
    assert_eq!(stat(&p, "failovers"), 0);
}

/// push_redirect_mode("parallel"): after t1's 480, t2 and t3 at once (in
/// serial mode t3 would get nothing: t2 answers 200).
fn redirect_mode(name: &str, engine: Engine) {
    let case = Case::new(name);
    let script = parallel_wrapper(&case, engine, "push_redirect");
    let p = kemi_proxy(&case, engine, &script);
    let t1 = case.terminal("t1", Answer::Code(480));
    let t2 = case.terminal("t2", Answer::Ok);
    let t3 = case.terminal("t3", Answer::Ok);
    case.register(&p, AOR, &t1, 1.0, 3600);
    case.register(&p, AOR, &t2, 0.7, 3600);
    case.register(&p, AOR, &t3, 0.5, 3600);
    let r = case.send(&p, Send::message(AOR).count(N));
    case.report(&r, &[&t1, &t2, &t3]);
    r.assert_all(200);
    for t in [&t1, &t2, &t3] {
        assert_eq!(t.wait_received(N as usize), N as usize);
    }
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn kemi_lua_f1_explicit_redirect_302() {
    f1("kemi_lua_f1", Engine::Lua);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn kemi_lua_f2_serial_failover() {
    f2("kemi_lua_f2", Engine::Lua);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn kemi_lua_f6_301_learned_and_applied() {
    f6("kemi_lua_f6", Engine::Lua);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn kemi_lua_push_lookup_mode_parallel() {
    lookup_mode("kemi_lua_lookup_mode", Engine::Lua);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn kemi_lua_push_redirect_mode_parallel() {
    redirect_mode("kemi_lua_redirect_mode", Engine::Lua);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn kemi_python_f1_explicit_redirect_302() {
    f1("kemi_python_f1", Engine::Python);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn kemi_python_f2_serial_failover() {
    f2("kemi_python_f2", Engine::Python);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn kemi_python_f6_301_learned_and_applied() {
    f6("kemi_python_f6", Engine::Python);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn kemi_python_push_lookup_mode_parallel() {
    lookup_mode("kemi_python_lookup_mode", Engine::Python);
}

#[test]
#[ignore = "needs Kamailio: run via make test"]
fn kemi_python_push_redirect_mode_parallel() {
    redirect_mode("kemi_python_redirect_mode", Engine::Python);
}
