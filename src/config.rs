//! The module's configuration: the parameters of SPEC §4, validated here so
//! that Kamailio refuses to start on a bad value (the module's modparam
//! fixups hand each value to [`Config::set`]).

use std::fmt;

use crate::chars;

/// How a set of targets is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkMode {
    /// One target per round; the next one after a failure.
    Serial,
    /// Every target of the round at once.
    Parallel,
}

impl ForkMode {
    /// Parses `serial` / `parallel` (ASCII case-insensitive).
    pub fn parse(s: &str) -> Option<ForkMode> {
        if s.eq_ignore_ascii_case("serial") {
            Some(ForkMode::Serial)
        } else if s.eq_ignore_ascii_case("parallel") {
            Some(ForkMode::Parallel)
        } else {
            None
        }
    }
}

/// A rejected parameter value: which parameter and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The parameter's name as written in `modparam`.
    pub param: String,
    /// What is wrong with the value.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "modparam \"{}\": {}", self.param, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Upper bound of `max_branches` (Kamailio's own per-transaction branch limit
/// is `max_branches` in core, 12 by default; the module is told the real one).
pub const MAX_BRANCHES_LIMIT: u32 = 64;
/// Upper bound of `max_depth`.
pub const MAX_DEPTH_LIMIT: u32 = 16;

/// All parameters of SPEC §4, with their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `store`: file path or URL of the forwarding store.
    pub store: String,
    /// `methods`, upper-cased.
    pub methods: Vec<String>,
    /// `failover_codes`, sorted.
    pub failover_codes: Vec<u16>,
    /// `fork_mode`.
    pub fork_mode: ForkMode,
    /// `max_branches`: new branches per reply round.
    pub max_branches: u32,
    /// `max_depth`: redirect replies followed per transaction.
    pub max_depth: u32,
    /// `allowed_domains`, lower-cased; `*.example.net` admits subdomains.
    pub allowed_domains: Vec<String>,
    /// `location_table`.
    pub location_table: String,
    /// `branch_timeout` in milliseconds.
    pub branch_timeout_ms: u32,
    /// `history_info`.
    pub history_info: bool,
    /// `store_timeout` in milliseconds: the longest one store operation
    /// may wait (SQLite: its busy timeout).
    pub store_timeout_ms: u32,
    /// Registrar's `path_check_local` (not a parameter of this module:
    /// the module reads registrar's own, key `registrar.path_check_local`):
    /// a first Path hop that is this proxy is skipped, as `lookup()` does.
    pub path_check_local: bool,
    /// `diversion`.
    pub diversion: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: "/var/lib/kamailio/push_redirect.sqlite".into(),
            methods: vec!["MESSAGE".into(), "NOTIFY".into()],
            failover_codes: vec![408, 415, 480, 486, 488, 500, 503],
            fork_mode: ForkMode::Serial,
            max_branches: 8,
            max_depth: 4,
            allowed_domains: Vec::new(),
            location_table: "location".into(),
            branch_timeout_ms: 5000,
            history_info: true,
            store_timeout_ms: 200,
            path_check_local: false,
            diversion: false,
        }
    }
}

impl Config {
    /// Sets one parameter by its `modparam` name from its textual value.
    /// On error nothing changes.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let err = |reason: String| ConfigError {
            param: name.to_string(),
            reason,
        };
        let value = value.trim();
        match name {
            "store" => {
                if value.is_empty() {
                    return Err(err("must not be empty".into()));
                }
                self.store = value.to_string();
            }
            "methods" => {
                let methods = list(value)
                    .map(|m| {
                        if m.bytes().all(|c| c.is_ascii_alphabetic()) {
                            Ok(m.to_ascii_uppercase())
                        } else {
                            Err(err(format!("\"{m}\" is not a SIP method name")))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if methods.is_empty() {
                    return Err(err("at least one method is needed".into()));
                }
                if let Some(m) = methods.iter().find(|m| {
                    matches!(m.as_str(), "INVITE" | "ACK" | "CANCEL" | "BYE" | "REGISTER")
                }) {
                    return Err(err(format!(
                        "{m} is not a PUSH method (only out-of-dialog non-INVITE requests such as MESSAGE, NOTIFY)"
                    )));
                }
                self.methods = methods;
            }
            "failover_codes" => {
                let mut codes = list(value)
                    .map(|c| match c.parse::<u16>() {
                        Ok(401) | Ok(407) => Err(err(format!(
                            "{c}: an authentication challenge is never failed over"
                        ))),
                        Ok(code) if (400..=599).contains(&code) => Ok(code),
                        _ => Err(err(format!("\"{c}\" is not a status code in 400..599"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                codes.sort_unstable();
                codes.dedup();
                self.failover_codes = codes;
            }
            "fork_mode" => {
                self.fork_mode = ForkMode::parse(value)
                    .ok_or_else(|| err(format!("\"{value}\" is neither serial nor parallel")))?;
            }
            "max_branches" => self.max_branches = int(value, 1, MAX_BRANCHES_LIMIT).map_err(err)?,
            "max_depth" => self.max_depth = int(value, 1, MAX_DEPTH_LIMIT).map_err(err)?,
            "allowed_domains" => {
                self.allowed_domains = list(value)
                    .map(|d| {
                        let host = d.strip_prefix("*.").unwrap_or(d);
                        if !host.is_empty()
                            && host
                                .bytes()
                                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
                        {
                            Ok(d.to_ascii_lowercase())
                        } else {
                            Err(err(format!("\"{d}\" is not a domain name")))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            }
            "location_table" => {
                if value.is_empty()
                    || !value
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    return Err(err(format!("\"{value}\" is not a table name")));
                }
                self.location_table = value.to_string();
            }
            "branch_timeout" => self.branch_timeout_ms = int(value, 100, 600_000).map_err(err)?,
            "history_info" => self.history_info = int(value, 0, 1).map_err(err)? == 1,
            "store_timeout" => self.store_timeout_ms = int(value, 10, 60_000).map_err(err)?,
            "registrar.path_check_local" => {
                self.path_check_local = int(value, 0, u32::MAX).map_err(err)? > 0;
            }
            "diversion" => self.diversion = int(value, 0, 1).map_err(err)? == 1,
            _ => return Err(err("unknown parameter".into())),
        }
        Ok(())
    }

    /// Whether `code` moves on to the next terminal.
    pub fn is_failover_code(&self, code: u16) -> bool {
        self.failover_codes.binary_search(&code).is_ok()
    }

    /// Whether `method` is a PUSH method.
    pub fn is_push_method(&self, method: &str) -> bool {
        // Methods arrive upper-cased as a rule: equal bytes first.
        self.methods.iter().any(|m| m == method)
            || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }

    /// Whether a foreign host is in `allowed_domains` (ASCII
    /// case-insensitive; `*.d` admits the subdomains of `d`).
    pub fn domain_allowed(&self, host: &str) -> bool {
        self.domain_allowed_bytes(host.as_bytes())
    }

    /// [`Config::domain_allowed`] over bytes.
    pub fn domain_allowed_bytes(&self, h: &[u8]) -> bool {
        self.allowed_domains
            .iter()
            .any(|d| match d.strip_prefix("*.") {
                Some(parent) => {
                    let p = parent.as_bytes();
                    h.len() > p.len() + 1
                        && h.get(h.len() - p.len()..)
                            .is_some_and(|s| chars::eq_ignore_ascii_case(s, p))
                        && h.get(h.len() - p.len() - 1) == Some(&b'.')
                }
                None => chars::eq_ignore_ascii_case(h, d.as_bytes()),
            })
    }
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn int(value: &str, min: u32, max: u32) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!("\"{value}\" is not an integer in {min}..{max}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_spec() {
        let c = Config::default();
        assert_eq!(c.failover_codes, [408, 415, 480, 486, 488, 500, 503]);
        assert_eq!(
            (c.max_branches, c.max_depth, c.branch_timeout_ms),
            (8, 4, 5000)
        );
        assert_eq!(c.fork_mode, ForkMode::Serial);
        assert!(c.is_push_method("message") && c.is_push_method("NOTIFY"));
        assert!(!c.is_push_method("OPTIONS"));
        assert_eq!(c.store_timeout_ms, 200);
    }

    #[test]
    fn good_values() {
        let mut c = Config::default();
        for (n, v) in [
            ("methods", "MESSAGE, notify ,PUBLISH"),
            ("failover_codes", "503,480,480"),
            ("fork_mode", "Parallel"),
            ("max_branches", "12"),
            ("max_depth", "2"),
            ("allowed_domains", "partner.example, *.trusted.example"),
            ("location_table", "location_push"),
            ("branch_timeout", "2000"),
            ("history_info", "0"),
            ("diversion", "1"),
            ("store", "/tmp/x.sqlite"),
            ("store_timeout", "50"),
        ] {
            c.set(n, v).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(c.methods, ["MESSAGE", "NOTIFY", "PUBLISH"]);
        assert_eq!(c.failover_codes, [480, 503]);
        assert_eq!(c.fork_mode, ForkMode::Parallel);
        assert!(c.domain_allowed("PARTNER.example"));
        assert!(c.domain_allowed("a.b.trusted.example"));
        assert!(!c.domain_allowed("trusted.example"));
        assert!(!c.domain_allowed("eviltrusted.example"));
        assert!(!c.domain_allowed("partner.example.evil"));
        assert!(!c.history_info);
        assert!(c.diversion);
        assert_eq!(c.store_timeout_ms, 50);
    }

    #[test]
    fn bad_values_name_the_parameter_and_change_nothing() {
        let rows = [
            ("methods", ""),
            ("methods", "MESSAGE,INVITE"),
            ("methods", "MES SAGE"),
            ("failover_codes", "480,401"),
            ("failover_codes", "603"),
            ("failover_codes", "302"),
            ("failover_codes", "abc"),
            ("fork_mode", "random"),
            ("max_branches", "0"),
            ("max_branches", "65"),
            ("max_branches", "-1"),
            ("max_depth", "99"),
            ("allowed_domains", "ex ample.com"),
            ("location_table", "loc;drop"),
            ("branch_timeout", "10"),
            ("history_info", "yes"),
            ("diversion", "2"),
            ("store", ""),
            ("store_timeout", "0"),
            ("store_timeout", "9"),
            ("store_timeout", "60001"),
            ("store_timeout", "soon"),
            ("no_such_param", "1"),
        ];
        for (name, value) in rows {
            let mut c = Config::default();
            let e = c.set(name, value).expect_err(name);
            assert_eq!(e.param, name);
            assert!(e.to_string().contains(name), "{e}");
            assert_eq!(c, Config::default(), "{name}={value} changed the config");
        }
    }
}
