//! A redis-server and a redis-sentinel of a test's own (Debian's packages;
//! `make test` installs them), on 127.0.0.1 on a free port, stopped by PID.
//! One fixture for the store tests (tests/store_redis.rs) and the e2e cases
//! (tests/e2e/shared_store.rs), included by `#[path]` into each crate.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh folder `push_redirect-{kind}-{name}-{pid}` under the temp dir.
fn fresh_temp_dir(kind: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "push_redirect-{kind}-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A redis-server with AOF on (fsync always, no RDB snapshots) in `dir`.
pub struct Redis {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
    /// More redis-server arguments (e.g. `--replicaof`).
    pub extra: Vec<String>,
    /// The folder is the fixture's own: removed on drop.
    owns_dir: bool,
}

impl Redis {
    /// Not running yet, in `dir` (created; kept on drop, e.g. a case's
    /// folder with its logs).
    pub fn in_dir(dir: PathBuf) -> Redis {
        std::fs::create_dir_all(&dir).unwrap();
        Redis {
            dir,
            port: free_port(),
            child: None,
            extra: Vec::new(),
            owns_dir: false,
        }
    }

    /// Not running yet, in a fresh temporary folder of its own, removed on
    /// drop.
    pub fn in_temp(name: &str) -> Redis {
        let mut r = Redis::in_dir(fresh_temp_dir("redis", name));
        r.owns_dir = true;
        r
    }

    /// Starts (or starts again, on the same port and folder) and waits up
    /// to 10 s for a PING to be answered.
    pub fn start(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(["--daemonize", "no", "--logfile", "redis.log"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package; make test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                println!("redis-server on 127.0.0.1:{}", self.port);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on {} did not answer", self.port);
    }

    /// `start`, for a chain: `Redis::in_temp("x").started()`.
    pub fn started(mut self) -> Redis {
        self.start();
        self
    }

    /// A replica of `master` (`--replicaof`), to be started.
    pub fn replica_of(mut self, master: &Redis) -> Redis {
        self.extra = vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port.to_string(),
        ];
        self
    }

    /// Waits up to 10 s until `key` is here (e.g. replicated from the
    /// master), and asserts it is.
    pub fn wait_replicated(&self, key: &str) {
        let mut c = self.client();
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis::cmd("EXISTS").arg(key).query::<i64>(&mut c).unwrap() == 0 {
            assert!(Instant::now() < deadline, "replicated");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url(""))
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(1))
            .unwrap()
    }

    pub fn ping(&self) -> bool {
        redis::Client::open(self.url(""))
            .ok()
            .and_then(|c| {
                c.get_connection_with_timeout(Duration::from_millis(200))
                    .ok()
            })
            .is_some_and(|mut c| redis::cmd("PING").query::<String>(&mut c).is_ok())
    }

    /// The store URL, database 0, with `prefix` unless it is empty.
    pub fn url(&self, prefix: &str) -> String {
        match prefix {
            "" => format!("redis://127.0.0.1:{}/0", self.port),
            p => format!("redis://127.0.0.1:{}/0?prefix={p}", self.port),
        }
    }

    /// How many clients subscribe to `channel` (PUBSUB NUMSUB).
    pub fn subscribers(&self, channel: &str) -> i64 {
        let (_, n): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query(&mut self.client())
            .unwrap();
        n
    }

    /// `kill -9`, by PID.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill9();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A redis-sentinel watching `master` as `mymaster` (quorum 1, down after
/// 500 ms, failover timeout 2 s).
pub struct Sentinel {
    dir: PathBuf,
    pub port: u16,
    child: Child,
    /// The folder is the fixture's own: removed on drop.
    owns_dir: bool,
}

impl Sentinel {
    /// Started in `dir` (created; kept on drop); waits up to 10 s until it
    /// names `master` as the master, and asserts it does.
    pub fn start(dir: PathBuf, master: u16) -> Sentinel {
        Sentinel::start_in(dir, false, master)
    }

    /// `start` in a fresh temporary folder of its own, removed on drop.
    pub fn in_temp(name: &str, master: u16) -> Sentinel {
        Sentinel::start_in(fresh_temp_dir("sentinel", name), true, master)
    }

    fn start_in(dir: PathBuf, owns_dir: bool, master: u16) -> Sentinel {
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "bind 127.0.0.1\nport {port}\ndir {}\nlogfile sentinel.log\n\
                 sentinel monitor mymaster 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds mymaster 500\n\
                 sentinel failover-timeout mymaster 2000\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-sentinel")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-sentinel (Debian's redis-sentinel package; make test installs it)");
        let s = Sentinel {
            dir,
            port,
            child,
            owns_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.master_port() != Some(master) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            s.master_port(),
            Some(master),
            "the sentinel watches the master"
        );
        s
    }

    /// Waits up to 30 s until the sentinel names `port` as the master
    /// (a failover), asserts it does, and returns how long that took.
    pub fn wait_master(&self, port: u16) -> Duration {
        let t = Instant::now();
        while self.master_port() != Some(port) {
            assert!(t.elapsed() < Duration::from_secs(30), "no failover");
            std::thread::sleep(Duration::from_millis(100));
        }
        t.elapsed()
    }

    /// The master's port as the sentinel names it, if it answers.
    pub fn master_port(&self) -> Option<u16> {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .ok()?
            .get_connection_with_timeout(Duration::from_millis(300))
            .ok()?;
        let addr: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg("mymaster")
            .query(&mut c)
            .ok()?;
        addr.and_then(|(_, p)| p.parse().ok())
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
