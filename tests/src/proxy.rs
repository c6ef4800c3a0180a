//! An HTTPS proxy that refuses everything and remembers what it was asked.
//!
//! pi's own issuer URL is hard-coded, so a test cannot point pi's refresh at
//! the mock. It points pi's `HTTPS_PROXY` here instead: any attempt by pi to
//! reach the outside (its own refresh above all) fails loudly and is counted.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct RefusingProxy {
    /// The loopback port it listens on.
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl RefusingProxy {
    /// Listens on a free loopback port until the test process ends; each
    /// connection's first line (`CONNECT host:port HTTP/1.1`) is recorded,
    /// then the connection is closed unanswered.
    pub fn start() -> RefusingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut first = String::new();
                let _ = BufReader::new(&conn).read_line(&mut first);
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(first.trim().to_owned());
            }
        });
        RefusingProxy { port, requests }
    }

    /// `http://127.0.0.1:<port>`, for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every first line received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
