//! The text form of a regression case (`tests/data/fuzz/{engine,c_abi}/*.case`).
//!
//! A structured fuzz input (bytes read by `arbitrary`) means something only
//! to the exact version of `arbitrary` and of the generator that read it: a
//! crash input kept in that form would silently turn into another input when
//! either changes. So a case is kept in this form instead: one record per
//! line, `tag field field...`, fields separated by one space. A byte field
//! is `=` followed by the bytes, every byte outside `!`..`~` (and `%`)
//! written `%XX`; an optional field is `-` when absent. Lines starting with
//! `#` are comments.

use std::fmt::Write as _;
use std::str::FromStr;

/// `=` and the escaped bytes.
pub fn bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() + 1);
    s.push('=');
    s.push_str(&escape(b));
    s
}

/// The escaped bytes alone.
pub fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if (0x21..=0x7e).contains(&c) && c != b'%' {
            s.push(char::from(c));
        } else {
            let _ = write!(s, "%{c:02X}");
        }
    }
    s
}

/// `-` or [`bytes`].
pub fn opt_bytes(b: Option<&[u8]>) -> String {
    b.map_or_else(|| "-".to_string(), bytes)
}

/// `-` or the number.
pub fn opt_num<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// `0` or `1`.
pub fn flag(v: bool) -> &'static str {
    if v {
        "1"
    } else {
        "0"
    }
}

/// Reads what [`escape`] wrote.
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or_else(|| format!("truncated escape in {s:?}"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|e| format!("{hex:?}: {e}"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Reads a [`bytes`] field.
pub fn get_bytes(f: &str) -> Result<Vec<u8>, String> {
    match f.strip_prefix('=') {
        Some(rest) => unescape(rest),
        None => Err(format!("byte field {f:?} must start with '='")),
    }
}

/// Reads an [`opt_bytes`] field.
pub fn get_opt_bytes(f: &str) -> Result<Option<Vec<u8>>, String> {
    if f == "-" {
        Ok(None)
    } else {
        get_bytes(f).map(Some)
    }
}

/// Reads a [`bytes`] field that must be UTF-8.
pub fn get_string(f: &str) -> Result<String, String> {
    String::from_utf8(get_bytes(f)?).map_err(|e| e.to_string())
}

/// Reads a number.
pub fn get_num<T: FromStr>(f: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    f.parse().map_err(|e| format!("{f:?}: {e}"))
}

/// Reads an [`opt_num`] field.
pub fn get_opt_num<T: FromStr>(f: &str) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    if f == "-" {
        Ok(None)
    } else {
        get_num(f).map(Some)
    }
}

/// Reads a [`flag`].
pub fn get_flag(f: &str) -> Result<bool, String> {
    match f {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(format!("{f:?} is not 0 or 1")),
    }
}

/// The records of a case: `(line number, tag, fields)`.
pub fn records(text: &str) -> impl Iterator<Item = (usize, &str, Vec<&str>)> {
    text.lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(n, l)| {
            let mut it = l.split(' ');
            let tag = it.next().unwrap_or("");
            (n, tag, it.collect())
        })
}

/// `fields[i]`, or an error naming the record.
pub fn field<'a>(fields: &[&'a str], i: usize, tag: &str) -> Result<&'a str, String> {
    fields
        .get(i)
        .copied()
        .ok_or_else(|| format!("record {tag}: field {} missing", i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_round_trip() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(get_bytes(&bytes(&all)).unwrap(), all);
        assert_eq!(get_bytes("=").unwrap(), b"");
        assert!(!bytes(&all).contains(' '));
    }
}
