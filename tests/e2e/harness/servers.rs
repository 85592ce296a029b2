//! Local servers for tests to talk to: the python ones in `tests/servers/`, and a minimal TCP
//! one in process.

use super::sandbox::root;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

/// A test server from `tests/servers/`, stopped when dropped.
pub(crate) struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    /// Start `tests/servers/SCRIPT` with `envs`; it prints its port.
    pub(crate) fn start(script: &str, envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new("python3")
            .arg(root().join("tests/servers").join(script))
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the test server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the server prints its port");
        Self { child, port }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-request-at-a-time HTTP server answering `200 hello`, in a thread; returns its port.
pub(crate) fn hello_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
            );
        }
    });
    port
}
