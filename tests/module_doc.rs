//! The module's document (`kamailio-module/README`, Kamailio's README
//! form) names everything the module exports: each parameter of the
//! `param_export_t` table with its type, each KEMI function of the
//! `sr_kemi_t` table, each RPC command of the `rpc_export_t` table and each
//! statistic the core counts. Its tables of contents match its sections.
//! (It may name more: SPEC section 4 items other work adds.)

use std::collections::BTreeSet;

const DOC: &str = include_str!("../kamailio-module/README");
const MODULE_C: &str = include_str!("../kamailio-module/push_redirect.c");
const RPC_C: &str = include_str!("../kamailio-module/push_redirect_rpc.c");

/// The section headings of the body: lines "N.M. title" at column 0
/// (the tables of contents are indented).
fn headings() -> BTreeSet<String> {
    DOC.lines()
        .filter(|l| {
            let mut parts = l.splitn(2, ". ");
            let num = parts.next().unwrap_or("");
            !l.starts_with(' ')
                && !num.is_empty()
                && num.split('.').all(|p| p.parse::<u32>().is_ok())
                && parts.next().is_some()
        })
        .map(|l| {
            // "4.1.  push_lookup([mode])": the title, spaces folded
            let (num, title) = l.split_once(". ").unwrap();
            format!("{num}. {}", title.trim())
        })
        .collect()
}

/// The "name" strings of `{"name", PARAM_TYPE ...` rows.
fn params() -> Vec<(String, &'static str)> {
    MODULE_C
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l.strip_prefix("{\"")?;
            let (name, tail) = rest.split_once('"')?;
            let ty = if tail.contains("PARAM_STRING") {
                "string"
            } else if tail.contains("PARAM_INT") {
                "int"
            } else {
                return None;
            };
            Some((name.to_string(), ty))
        })
        .collect()
}

#[test]
fn every_parameter_is_documented_with_its_type() {
    let h = headings();
    let ps = params();
    assert!(
        ps.len() >= 10,
        "parameters found in push_redirect.c: {ps:?}"
    );
    for (name, ty) in ps {
        assert!(
            h.iter()
                .any(|x| x.starts_with("3.") && x.ends_with(&format!(". {name} ({ty})"))),
            "parameter {name} ({ty}) has no section 3.N in kamailio-module/README"
        );
    }
}

#[test]
fn every_kemi_function_is_documented() {
    let names: Vec<&str> = MODULE_C
        .split("str_init(\"push_redirect\"), str_init(\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    let h = headings();
    for n in names {
        assert!(
            h.iter()
                .any(|x| x.starts_with("5.") && x.contains(&format!("KSR.push_redirect.{n}("))),
            "KEMI function {n} has no section 5.N"
        );
    }
}

#[test]
fn every_rpc_command_is_documented() {
    let cmds: Vec<&str> = RPC_C
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("{\"push_redirect."))
        .filter_map(|s| s.split('"').next())
        .collect();
    assert!(cmds.len() >= 5, "{cmds:?}");
    let h = headings();
    for c in cmds {
        assert!(
            h.iter()
                .any(|x| x.starts_with("6.") && x.contains(&format!("push_redirect.{c}"))),
            "RPC command push_redirect.{c} has no section 6.N"
        );
    }
}

#[test]
fn every_statistic_is_documented() {
    let h = headings();
    for s in push_redirect::stats::Stat::ALL {
        let name = s.name();
        assert!(
            h.iter()
                .any(|x| x.starts_with("7.") && x.ends_with(&format!(". {name}"))),
            "statistic {name} has no section 7.N"
        );
    }
}

#[test]
fn the_tables_of_contents_match_the_sections() {
    let h = headings();
    // the chapter's table of contents: indented "N. title" / "N.M. title"
    let start = DOC.find("Chapter 1. Admin Guide").expect("chapter");
    let body_start = DOC[start..].find("\n1. Overview").expect("body") + start;
    let toc: BTreeSet<String> = DOC[start..body_start]
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.split_once(". ")
                .is_some_and(|(n, _)| n.split('.').all(|p| p.parse::<u32>().is_ok()))
        })
        .map(|l| {
            let (num, title) = l.split_once(". ").unwrap();
            format!("{num}. {}", title.trim())
        })
        .collect();
    assert!(toc.len() > 30, "{toc:?}");
    let missing: Vec<_> = toc.difference(&h).collect();
    let extra: Vec<_> = h.difference(&toc).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "table of contents without a section: {missing:?}; sections not in it: {extra:?}"
    );
    // the document's own table of contents says the same
    for t in &toc {
        let (num, title) = t.split_once(". ").unwrap();
        assert!(
            DOC[..start].contains(&format!("{num}. {title}")),
            "{t} missing from the first table of contents"
        );
    }
}
