//! Test support shared by this crate's and the binary's tests: a real `redis-server` on a free
//! port, with its data in its own directory, killed when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    appendonly: bool,
}

impl RedisServer {
    /// An in-memory server (no persistence).
    pub fn start() -> Self {
        Self::launch(free_port(), fresh_dir(), false)
    }

    /// A server with `appendonly yes`: what it acknowledged survives a restart.
    pub fn start_durable() -> Self {
        Self::launch(free_port(), fresh_dir(), true)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL the server (no shutdown save).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freeze (SIGSTOP) or thaw (SIGCONT) the server: a Redis that accepts connections and
    /// never answers.
    pub fn freeze(&self, frozen: bool) {
        if let Some(c) = &self.child {
            let sig = if frozen { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill")
                .arg(sig)
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Remove every key (`FLUSHALL`).
    pub fn flush(&self) {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 5];
            let _ = s
                .write_all(b"FLUSHALL\r\n")
                .and_then(|()| s.read_exact(&mut buf));
        }
    }

    /// Start it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn(self.port, &self.dir, self.appendonly));
        self.wait_up();
    }

    fn launch(port: u16, dir: PathBuf, appendonly: bool) -> Self {
        let server = RedisServer {
            child: Some(spawn(port, &dir, appendonly)),
            port,
            dir,
            appendonly,
        };
        server.wait_up();
        server
    }

    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(port: u16, dir: &Path, appendonly: bool) -> Child {
    let yes_no = if appendonly { "yes" } else { "no" };
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", yes_no, "--appendfsync", "always"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server not found: install it (apt-get install -y redis-server)")
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn fresh_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sluice-redis-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
