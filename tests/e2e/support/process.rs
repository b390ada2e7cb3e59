//! Child processes: bounded runs and waits, process groups, signals.

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub(super) const SIGKILL: i32 = 9;
pub(super) const SIGTERM: i32 = 15;
const PR_SET_PDEATHSIG: i32 = 1;

extern "C" {
    pub(super) fn kill(pid: i32, sig: i32) -> i32;
    fn prctl(option: i32, ...) -> i32;
}

pub(super) fn wait_until(timeout: Duration, step: Duration, mut f: impl FnMut() -> bool) -> bool {
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
pub(super) fn die_with_parent(cmd: &mut Command) {
    unsafe {
        cmd.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL as std::os::raw::c_ulong);
            Ok(())
        });
    }
}

pub(super) fn tail(path: &Path, lines: usize) -> String {
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

pub(super) fn kill_child(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// The non-zombie processes of process group `pgid`.
pub fn group_pids(pgid: i32) -> Vec<i32> {
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

/// Writes `text` to `path` (helper for tests that generate a cfg).
pub fn write_file(path: &Path, text: &str) {
    let mut f = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(text.as_bytes()).unwrap();
}
