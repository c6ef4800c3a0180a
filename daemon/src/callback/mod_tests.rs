use std::io::{Read, Write};

use super::*;
use crate::secret::Secret;

#[test]
fn the_companion_is_the_other_loopback() {
    let v4: SocketAddr = "127.0.0.1:1455".parse().unwrap();
    let v6: SocketAddr = "[::1]:1455".parse().unwrap();
    assert_eq!(companion(v4), Some(v6));
    assert_eq!(companion(v6), Some(v4));
    assert_eq!(companion("127.0.0.2:1455".parse().unwrap()), None);
}

fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[tokio::test]
async fn both_families_share_one_port() {
    let bound = bind(&["127.0.0.1:0".parse().unwrap()]).await.unwrap();
    let port = bound.addr.port();
    assert_ne!(port, 0);
    let families: Vec<SocketAddr> = bound
        .listeners
        .iter()
        .map(|l| l.local_addr().unwrap())
        .collect();
    let mut expected = vec![bound.addr];
    if ipv6_loopback() {
        expected.push(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port));
    }
    assert_eq!(families, expected);
}

#[tokio::test]
async fn a_port_half_held_by_this_user_moves_to_the_next() {
    if !ipv6_loopback() {
        return; // nothing to half-hold
    }
    let squat = std::net::TcpListener::bind("[::1]:0").unwrap();
    let port = squat.local_addr().unwrap().port();
    let first = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
    let bound = bind(&[first, "127.0.0.1:0".parse().unwrap()])
        .await
        .unwrap();
    assert_ne!(bound.addr.port(), port);
    assert!(
        std::net::TcpListener::bind(first).is_ok(),
        "the half that was bound is let go"
    );
    let Err(Refusal::Unavailable(errors)) = bind(&[first]).await else {
        panic!("the only candidate is busy")
    };
    let said = errors[0].to_string();
    assert!(said.contains("is busy"), "{said}");
    #[cfg(target_os = "linux")]
    assert!(
        said.contains(&format!("process {}", std::process::id())),
        "the holder is named: {said}"
    );
}

fn flow(port: u16) -> Flow {
    Flow {
        port,
        state: Secret::from("st"),
        start_nonce: Secret::from("nonce"),
        cookie: Secret::from("ck"),
        authorize_url: Secret::from("https://issuer.example/authorize"),
    }
}

/// One raw HTTP/1.1 request; the response as text.
fn request(addr: SocketAddr, head: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_cookie_and_callback_over_real_sockets() {
    let bound = bind(&["127.0.0.1:0".parse().unwrap()]).await.unwrap();
    let addr = bound.addr;
    let (tx, mut rx) = mpsc::channel(4);
    let server = CallbackServer::start(bound, flow(addr.port()), tx);
    assert_eq!(
        server.start_url(),
        format!("http://localhost:{}/start/nonce", addr.port())
    );
    let host = format!("Host: localhost:{}\r\n", addr.port());
    let run = |head: String| tokio::task::spawn_blocking(move || request(addr, &head));

    let start = run(format!("GET /start/nonce HTTP/1.1\r\n{host}\r\n"))
        .await
        .unwrap();
    assert!(start.starts_with("HTTP/1.1 302"), "{start}");
    assert!(
        start.contains("set-cookie: piauthd_login=ck; HttpOnly; SameSite=Lax; Path=/"),
        "{start}"
    );
    let bare = run(format!(
        "GET /auth/callback?code=c&state=st HTTP/1.1\r\n{host}\r\n"
    ))
    .await
    .unwrap();
    assert!(bare.starts_with("HTTP/1.1 403"), "{bare}");
    let evil = run(format!(
        "GET /auth/callback?code=c&state=st HTTP/1.1\r\nHost: evil.example:{}\r\nCookie: piauthd_login=ck\r\n\r\n",
        addr.port()
    ))
    .await
    .unwrap();
    assert!(evil.starts_with("HTTP/1.1 421"), "{evil}");
    let good = run(format!(
        "GET /auth/callback?code=c&state=st HTTP/1.1\r\n{host}Cookie: piauthd_login=ck\r\n\r\n"
    ))
    .await
    .unwrap();
    assert!(good.starts_with("HTTP/1.1 200"), "{good}");
    assert_eq!(
        rx.recv().await,
        Some(CallbackEvent::Code(Secret::from("c")))
    );
    drop(server);
    let mut freed = false;
    for _ in 0..100 {
        freed = std::net::TcpListener::bind(addr).is_ok();
        if freed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(freed, "dropping the server frees the port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_head_deadline() {
    let bound = bind(&["127.0.0.1:0".parse().unwrap()]).await.unwrap();
    let addr = bound.addr;
    let (tx, _rx) = mpsc::channel(4);
    let _server = CallbackServer::start(bound, flow(addr.port()), tx);
    let closed_after = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(HEAD_DEADLINE * 3)).unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        t.elapsed()
    })
    .await
    .unwrap();
    assert!(
        closed_after >= HEAD_DEADLINE && closed_after < HEAD_DEADLINE * 2,
        "{closed_after:?}"
    );
}
