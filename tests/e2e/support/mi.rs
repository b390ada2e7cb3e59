//! OpenSIPS's MI over its FIFO (modules/mi_fifo, OpenSIPS 3.x): a
//! JSON-RPC request written to the FIFO as `:REPLY:{json}\n`, the reply read
//! from the FIFO `REPLY` the client made in mi_fifo's `reply_dir` (default
//! /tmp/). And the one place an MI reply becomes the text `kamcmd` prints,
//! which the cases assert on (`Proxy::rpc`).

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

extern "C" {
    fn mkfifo(path: *const std::os::raw::c_char, mode: u32) -> i32;
}

const O_NONBLOCK: i32 = 0o4000;
/// mi_fifo's default `reply_dir` (its DEFAULT_MI_REPLY_DIR).
const REPLY_DIR: &str = "/tmp";

/// A JSON value (what MI replies hold). Numbers are kept as written.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The JSON text of a string.
    pub fn quote(s: &str) -> String {
        let mut o = String::with_capacity(s.len() + 2);
        o.push('"');
        for c in s.chars() {
            match c {
                '"' => o.push_str("\\\""),
                '\\' => o.push_str("\\\\"),
                '\n' => o.push_str("\\n"),
                '\r' => o.push_str("\\r"),
                '\t' => o.push_str("\\t"),
                c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
                c => o.push(c),
            }
        }
        o.push('"');
        o
    }

    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing text at {} of {text:?}", p.i));
        }
        Ok(v)
    }

    /// As `kamcmd` prints an RPC reply: a string as is, a number as
    /// written, an object as `{` + one `key: value` line each + `}`, an
    /// array as its elements one after the other.
    pub fn kamcmd_text(&self) -> String {
        let mut o = String::new();
        self.write_kamcmd(&mut o, 0);
        o
    }

    fn write_kamcmd(&self, o: &mut String, depth: usize) {
        let pad = "\t".repeat(depth);
        match self {
            Json::Arr(v) => v.iter().for_each(|x| x.write_kamcmd(o, depth)),
            Json::Obj(kv) => {
                o.push_str(&format!("{pad}{{\n"));
                for (k, v) in kv {
                    match v {
                        Json::Arr(_) | Json::Obj(_) => {
                            o.push_str(&format!("{pad}\t{k}:\n"));
                            v.write_kamcmd(o, depth + 2);
                        }
                        _ => o.push_str(&format!("{pad}\t{k}: {}\n", v.scalar())),
                    }
                }
                o.push_str(&format!("{pad}}}\n"));
            }
            _ => o.push_str(&format!("{pad}{}\n", self.scalar())),
        }
    }

    fn scalar(&self) -> String {
        match self {
            Json::Null => String::new(),
            Json::Bool(b) => b.to_string(),
            Json::Num(n) => n.clone(),
            Json::Str(s) => s.clone(),
            _ => String::new(),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("JSON: {what} at byte {}", self.i))
    }
    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }
    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > 64 {
            return self.err("nested too deep");
        }
        self.ws();
        let Some(&c) = self.s.get(self.i) else {
            return self.err("unexpected end");
        };
        match c {
            b'{' => {
                self.i += 1;
                let mut kv = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Ok(Json::Obj(kv));
                }
                loop {
                    self.ws();
                    let Json::Str(k) = self.string()? else {
                        unreachable!()
                    };
                    self.ws();
                    if !self.eat(":") {
                        return self.err("':' expected");
                    }
                    let v = self.value(depth + 1)?;
                    kv.push((k, v));
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("}") {
                        return Ok(Json::Obj(kv));
                    }
                    return self.err("',' or '}' expected");
                }
            }
            b'[' => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Ok(Json::Arr(v));
                }
                loop {
                    v.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("]") {
                        return Ok(Json::Arr(v));
                    }
                    return self.err("',' or ']' expected");
                }
            }
            b'"' => self.string(),
            b't' if self.eat("true") => Ok(Json::Bool(true)),
            b'f' if self.eat("false") => Ok(Json::Bool(false)),
            b'n' if self.eat("null") => Ok(Json::Null),
            b'-' | b'0'..=b'9' => {
                let st = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                Ok(Json::Num(
                    String::from_utf8_lossy(&self.s[st..self.i]).into_owned(),
                ))
            }
            _ => self.err("unexpected character"),
        }
    }
    fn string(&mut self) -> Result<Json, String> {
        if !self.eat("\"") {
            return self.err("string expected");
        }
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => return Ok(Json::Str(String::from_utf8_lossy(&out).into_owned())),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4).unwrap_or(b"");
                            let cp = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok());
                            let Some(cp) = cp else {
                                return self.err("bad \\u escape");
                            };
                            self.i += 4;
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            out.extend_from_slice(ch.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
    }
}

static REPLY_SEQ: AtomicUsize = AtomicUsize::new(0);

/// One MI command over the FIFO `fifo`: `params` is the JSON text of the
/// request's params (an array or an object). Ok(result), or Err(the
/// JSON-RPC error, or why no reply came within `timeout`).
pub fn mi_call(fifo: &Path, method: &str, params: &str, timeout: Duration) -> Result<Json, String> {
    let name = format!(
        "push_redirect_e2e_{}_{}",
        std::process::id(),
        REPLY_SEQ.fetch_add(1, Ordering::SeqCst)
    );
    let reply: PathBuf = Path::new(REPLY_DIR).join(&name);
    let _ = fs::remove_file(&reply);
    let c = CString::new(reply.as_os_str().as_bytes()).unwrap();
    if unsafe { mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(format!(
            "mkfifo {}: {}",
            reply.display(),
            std::io::Error::last_os_error()
        ));
    }
    let res = mi_exchange(fifo, &reply, &name, method, params, timeout);
    let _ = fs::remove_file(&reply);
    let text = res?;
    let v = Json::parse(text.trim()).map_err(|e| format!("MI {method}: {e}: {text:?}"))?;
    if let Some(err) = v.get("error") {
        let code = err.get("code").map(Json::scalar).unwrap_or_default();
        let msg = err.get("message").map(Json::scalar).unwrap_or_default();
        return Err(format!("MI {method} {params}: error: {code} - {msg}"));
    }
    v.get("result")
        .cloned()
        .ok_or_else(|| format!("MI {method}: a reply without result or error: {text}"))
}

fn mi_exchange(
    fifo: &Path,
    reply: &Path,
    name: &str,
    method: &str,
    params: &str,
    timeout: Duration,
) -> Result<String, String> {
    // The reader waits in open() for OpenSIPS to open the reply FIFO
    // (mi_fifo retries for 320 ms), then reads until it closes it.
    let (tx, rx) = mpsc::channel();
    let r = reply.to_path_buf();
    std::thread::spawn(move || {
        let mut s = String::new();
        let res = fs::File::open(&r).and_then(|mut f| f.read_to_string(&mut s));
        let _ = tx.send(res.map(|_| s));
    });
    let req = format!(
        ":{name}:{{\"jsonrpc\":\"2.0\",\"method\":{},\"params\":{params},\"id\":1}}\n",
        Json::quote(method)
    );
    let end = Instant::now() + timeout;
    // The command FIFO: non-blocking, so a proxy that is gone (no reader)
    // is an error, not a hang.
    let sent = loop {
        match OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(fifo)
        {
            Ok(mut f) => break f.write_all(req.as_bytes()).map_err(|e| e.to_string()),
            Err(e) if Instant::now() >= end => break Err(e.to_string()),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    if let Err(e) = sent {
        release(reply);
        return Err(format!(
            "MI {method}: cannot write to {}: {e}",
            fifo.display()
        ));
    }
    match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("MI {method}: reading {}: {e}", reply.display())),
        Err(_) => {
            release(reply);
            Err(format!("MI {method}: no reply within {timeout:?}"))
        }
    }
}

/// Ends the reader thread's wait: open the reply FIFO for writing and close it.
fn release(reply: &Path) {
    let _ = OpenOptions::new()
        .write(true)
        .custom_flags(O_NONBLOCK)
        .open(reply);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_parses_an_mi_reply_and_prints_it_as_kamcmd_does() {
        let v = Json::parse(
            r#"{"jsonrpc":"2.0","result":[{"aor":"sip:u1@example.com","kind":"permanent","expires_in":-1,"t":["a\"b",true,null]}],"id":1}"#,
        )
        .unwrap();
        let r = v.get("result").unwrap();
        assert_eq!(
            r.kamcmd_text(),
            "{\n\taor: sip:u1@example.com\n\tkind: permanent\n\texpires_in: -1\n\tt:\n\t\ta\"b\n\t\ttrue\n\t\t\n}\n"
        );
        assert_eq!(
            Json::parse("\"Ok. 1\\u0020x\"").unwrap().kamcmd_text(),
            "Ok. 1 x\n"
        );
        assert!(Json::parse("{\"a\":1,}").is_err());
        assert!(Json::parse("[1 2]").is_err());
        assert!(Json::parse(&"[".repeat(100)).is_err());
        assert_eq!(Json::quote("a\"\\\n"), "\"a\\\"\\\\\\n\"");
    }
}
