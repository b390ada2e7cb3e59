//! OpenSIPS as the proxy under test (`E2E_PROXY=opensips`): where its
//! binary and modules are, and its cfgs' placeholders.
//!
//! OpenSIPS has no `#!define`: every knob of a test cfg under
//! `cfg/opensips/` is a placeholder `@NAME@`, declared with its default on
//! a line `#@define NAME default` (the default may be empty; comment lines
//! are left as they are). The harness
//! writes the cfg with the case's values (else the defaults) substituted
//! into the proxy's folder, and refuses a placeholder that is not
//! declared and a case value for a knob the cfg does not declare (it would
//! change nothing). The knobs are the Kamailio test cfgs' names (SIP_PORT,
//! CHILDREN, PR_MODULE, PR_STORE, FORK_MODE, ...) plus `MI_FIFO` (the MI
//! FIFO, in place of CTL_SOCK) and `MPATH` (OpenSIPS's modules folder),
//! which the harness sets.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::*;

/// The OpenSIPS source tree the binary and modules come from:
/// `OPENSIPS_TREE`, else the folder of `OPENSIPS`, else the tree the last
/// `make opensips` built the module against (`build/opensips/tree`), else
/// the one tree `scripts/opensips-build.sh` built under `.cache/opensips/`
/// (the last line it prints), else a panic that says how to get one.
pub fn opensips_tree() -> PathBuf {
    if let Some(t) = std::env::var_os("OPENSIPS_TREE") {
        return PathBuf::from(t);
    }
    if let Some(b) = std::env::var_os("OPENSIPS") {
        if let Some(d) = Path::new(&b).parent() {
            return d.to_path_buf();
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Ok(t) = fs::read_to_string(root.join("build/opensips/tree")) {
        let t = PathBuf::from(t.trim());
        if t.join("opensips").is_file() {
            return t;
        }
    }
    // scripts/opensips-build.sh: .cache/opensips/<name>/<name>/opensips
    let cache = root.join(".cache/opensips");
    let mut trees: Vec<PathBuf> = fs::read_dir(&cache)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join(e.file_name()))
                .filter(|t| t.join("opensips").is_file())
                .collect()
        })
        .unwrap_or_default();
    trees.sort();
    match trees.len() {
        1 => trees.remove(0),
        0 => panic!(
            "no OpenSIPS: set OPENSIPS_TREE (the tree scripts/opensips-build.sh prints \
             last) or run `make test-opensips OPENSIPS_TARBALL=...`"
        ),
        _ => panic!(
            "several OpenSIPS trees under {}: {trees:?}; set OPENSIPS_TREE",
            cache.display()
        ),
    }
}

/// `OPENSIPS`, else `<tree>/opensips`.
pub fn opensips_bin() -> PathBuf {
    match std::env::var_os("OPENSIPS") {
        Some(b) => PathBuf::from(b),
        None => opensips_tree().join("opensips"),
    }
}

/// OpenSIPS's modules folder, `<tree>/modules/` (modules are
/// `<m>/<m>.so` under it): the cfgs' `MPATH`.
pub fn opensips_mpath() -> String {
    format!("{}/", opensips_tree().join("modules").display())
}

/// The `#@define NAME default` lines of a cfg, in order.
pub fn cfg_declared(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("#@define"))
        .filter_map(|rest| {
            let rest = rest.trim();
            let (name, default) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            (!name.is_empty()).then(|| (name.to_string(), default.trim().to_string()))
        })
        .collect()
}

/// The placeholders `@NAME@` (NAME: A-Z, 0-9, _) a cfg uses outside its
/// comment lines (`#@define` ones included), in order of first use.
pub fn cfg_placeholders(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'@' {
                let mut j = i + 1;
                while j < b.len()
                    && (b[j].is_ascii_uppercase() || b[j].is_ascii_digit() || b[j] == b'_')
                {
                    j += 1;
                }
                if j > i + 1 && j < b.len() && b[j] == b'@' {
                    let name = &line[i + 1..j];
                    if !out.iter().any(|n| n == name) {
                        out.push(name.to_string());
                    }
                    i = j + 1;
                    continue;
                }
            }
            i += 1;
        }
    }
    out
}

/// `text` with every placeholder replaced: the value in `values` (the
/// case's and the harness's), else the cfg's default. Err names an
/// undeclared placeholder, or a case value (`from_case`) the cfg does not
/// declare.
pub fn render_cfg(
    text: &str,
    values: &[(String, String)],
    from_case: &[String],
) -> Result<String, String> {
    let declared = cfg_declared(text);
    let used = cfg_placeholders(text);
    let undeclared: Vec<&String> = used.iter().filter(|n| !declared.contains_key(*n)).collect();
    if !undeclared.is_empty() {
        return Err(format!(
            "placeholders used but not declared (`#@define NAME default`): {}",
            undeclared
                .iter()
                .map(|n| format!("@{n}@"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    let unknown: Vec<&String> = from_case
        .iter()
        .filter(|n| !declared.contains_key(*n))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "the case sets {unknown:?}, which the cfg does not declare (`#@define`): \
             it would change nothing"
        ));
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut l = line.to_string();
        for name in &used {
            let v = values
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| declared[name].as_str());
            l = l.replace(&format!("@{name}@"), v);
        }
        out.push_str(&l);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "#@define SIP_PORT 5060\n#@define FORK_MODE serial\n#@define ALLOWED_DOMAINS\n\
        socket=udp:127.0.0.1:@SIP_PORT@\nmodparam(\"push_redirect\", \"fork_mode\", \"@FORK_MODE@\")\n\
        modparam(\"push_redirect\", \"allowed_domains\", \"@ALLOWED_DOMAINS@\") # sip:u1@example.com\n";

    #[test]
    fn opensips_cfg_placeholders_take_the_case_value_else_the_default() {
        let v = |a: &[(&str, &str)]| -> Vec<(String, String)> {
            a.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        let out = render_cfg(CFG, &v(&[("SIP_PORT", "23456")]), &[]).unwrap();
        assert!(out.contains("socket=udp:127.0.0.1:23456\n"), "{out}");
        assert!(out.contains("\"fork_mode\", \"serial\")"), "{out}");
        assert!(out.contains("\"allowed_domains\", \"\")"), "{out}");
        assert!(out.contains("sip:u1@example.com"), "{out}");
        let out = render_cfg(
            CFG,
            &v(&[("FORK_MODE", "serial"), ("FORK_MODE", "parallel")]),
            &["FORK_MODE".into()],
        )
        .unwrap();
        assert!(
            out.contains("\"fork_mode\", \"parallel\")"),
            "the last value wins: {out}"
        );
        let e = render_cfg(&format!("{CFG}x=@MAX_DEPTH@\n"), &[], &[]).unwrap_err();
        assert!(e.contains("@MAX_DEPTH@"), "{e}");
        let e = render_cfg(CFG, &v(&[("LOOKUP_MODE", "x")]), &["LOOKUP_MODE".into()]).unwrap_err();
        assert!(e.contains("LOOKUP_MODE"), "{e}");
    }

    #[test]
    fn opensips_test_cfgs_declare_every_placeholder_and_the_harness_knobs() {
        let dir = e2e_dir().join("cfg/opensips");
        let mut n = 0;
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let text = fs::read_to_string(e.path()).unwrap();
            render_cfg(&text, &[], &[])
                .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
            let declared = cfg_declared(&text);
            for knob in ["SIP_PORT", "CHILDREN", "MI_FIFO", "MPATH"] {
                assert!(
                    declared.contains_key(knob),
                    "{} declares no {knob}",
                    e.path().display()
                );
            }
            n += 1;
        }
        assert!(n >= 1, "no cfg under {}", dir.display());
    }
}
