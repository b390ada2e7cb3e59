//! Ports on 127.0.0.1 / ::1 and the transports terminals listen on.

use std::collections::HashSet;
use std::fs;
use std::net::UdpSocket;
use std::sync::Mutex;

/// A UDP port on 127.0.0.1 that was free a moment ago, never handed out twice
/// by this process.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`), so that
/// no socket bound to port 0 meanwhile (this harness's probes, sipp's own
/// sockets, another test run) can be given it before the Kamailio or sipp
/// it is meant for binds it: a port taken from `bind(0)` and released could
/// be, and a proxy then failed to start with "Address already in use".
pub fn free_udp_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let set = given.get_or_insert_with(HashSet::new);
    // sipp's own side ports are 6000+ (media) and 8888+ (control).
    let low: u16 = 20000;
    let high = ephemeral_low().saturating_sub(1).max(low + 1000);
    let mut x = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    for _ in 0..2000 {
        // xorshift64: a different start in each test process
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = low + (x % u64::from(high - low + 1)) as u16;
        if set.contains(&port) || UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        set.insert(port);
        return port;
    }
    panic!("no free UDP port in {low}..={high}");
}

/// The first port of the kernel's ephemeral range (32768 if unreadable).
fn ephemeral_low() -> u16 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// True when some socket is bound to udp 127.0.0.1:port or 0.0.0.0:port.
pub fn udp_port_bound(port: u16) -> bool {
    socket_on("/proc/net/udp", port, None)
}

/// True when some socket listens on tcp 127.0.0.1:port or 0.0.0.0:port.
pub fn tcp_port_listening(port: u16) -> bool {
    // 0A: TCP_LISTEN
    socket_on("/proc/net/tcp", port, Some("0A"))
}

/// Whether `table` (/proc/net/udp or tcp) has a socket on 127.0.0.1:port or
/// 0.0.0.0:port, in `state` when given.
fn socket_on(table: &str, port: u16, state: Option<&str>) -> bool {
    let Ok(text) = fs::read_to_string(table) else {
        return false;
    };
    let want = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    text.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && want.iter().any(|w| w == f[1]) && state.is_none_or(|st| f[3] == st)
    })
}

/// How a terminal is reached: the transport its sipp listens on and its
/// registered contact names (`;transport=tcp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// A terminal on TLS is `support/tls_terminal.py` (Debian's sipp has
    /// no TLS), with the certificates of `Case::tls_files`.
    Tls,
}

impl Transport {
    /// sipp's `-t` mode for a UAS on this transport.
    pub(super) fn sipp_mode(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
            Transport::Tls => "l1",
        }
    }
    /// The contact URI parameter, "" for UDP (the default).
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
        }
    }
    pub(super) fn bound(self, port: u16) -> bool {
        match self {
            Transport::Udp => udp_port_bound(port),
            Transport::Tcp | Transport::Tls => tcp_port_listening(port),
        }
    }
    /// As `bound`, on ::1 (or ::).
    pub(super) fn bound_v6(self, port: u16) -> bool {
        let (table, state) = match self {
            Transport::Udp => ("/proc/net/udp6", None),
            Transport::Tcp | Transport::Tls => ("/proc/net/tcp6", Some("0A")),
        };
        let Ok(text) = fs::read_to_string(table) else {
            return false;
        };
        let want = [
            format!("00000000000000000000000001000000:{port:04X}"),
            format!("00000000000000000000000000000000:{port:04X}"),
        ];
        text.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && want.iter().any(|w| w == f[1]) && state.is_none_or(|st| f[3] == st)
        })
    }
}

/// Sends probe `n` (`OPTIONS sip:127.0.0.1:PORT`, Max-Forwards: 0, which a
/// cfg answers with 483 or its keepalive 200) from `sock` to `port`, and
/// whether a SIP response came back within `sock`'s read timeout.
pub fn options_probe_answered(sock: &UdpSocket, port: u16, n: u32) -> bool {
    let lport = sock.local_addr().map(|a| a.port()).unwrap_or(0);
    let msg = format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK-probe-{n}\r\n\
         From: <sip:probe@127.0.0.1>;tag=probe\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: probe-{n}-{lport}@127.0.0.1\r\n\
         CSeq: {n} OPTIONS\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n"
    );
    let _ = sock.send_to(msg.as_bytes(), ("127.0.0.1", port));
    let mut buf = [0u8; 4096];
    matches!(sock.recv_from(&mut buf), Ok((len, _)) if buf[..len].starts_with(b"SIP/2.0 "))
}
