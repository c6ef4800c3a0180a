use super::*;
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt;

fn tracked(reg: &Arc<Registry>, idle: Duration) -> (Tracked, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let state = reg.admit().expect("a free slot");
    (Tracked::with_idle(ours, state, reg.clone(), idle), theirs)
}

/// Reads until end of file; Err if `limit` passes first.
async fn eof_within(t: &mut Tracked, limit: Duration) -> Result<(), &'static str> {
    let mut buf = [0u8; 16];
    match tokio::time::timeout(limit, t.read(&mut buf)).await {
        Ok(Ok(0)) => Ok(()),
        Ok(other) => panic!("unexpected read: {other:?}"),
        Err(_) => Err("still open"),
    }
}

#[tokio::test]
async fn an_idle_connection_closes_but_not_while_a_stream_is_open() {
    let reg = Registry::new(4);
    let (mut t, _peer) = tracked(&reg, Duration::from_millis(150));
    let guard = StreamGuard::open(t.state.clone());
    // A stream (a WatchToken) is open: the connection stays past the timeout.
    assert_eq!(
        eof_within(&mut t, Duration::from_millis(400)).await,
        Err("still open")
    );
    drop(guard);
    let ended = Instant::now();
    eof_within(&mut t, Duration::from_secs(2)).await.unwrap();
    assert!(
        ended.elapsed() >= Duration::from_millis(140),
        "idle counted from the stream's end"
    );
    assert_eq!(reg.len(), 1);
    drop(t);
    assert!(reg.is_empty(), "closing frees the slot");
}

#[tokio::test]
async fn at_the_cap_the_connection_idle_longest_is_evicted() {
    let reg = Registry::new(2);
    let (mut old, _p1) = tracked(&reg, idle());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (mut busy, _p2) = tracked(&reg, idle());
    let _stream = StreamGuard::open(busy.state.clone());
    assert!(reg.admit().is_none(), "the cap holds");
    assert!(reg.evict_idlest());
    eof_within(&mut old, Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        eof_within(&mut busy, Duration::from_millis(100)).await,
        Err("still open"),
        "a busy connection is never evicted"
    );
    drop(old);
    assert!(reg.admit().is_some(), "the evicted slot is free again");
    // Only busy connections left (and the new idle one): the new one goes.
    assert!(reg.evict_idlest());
}

#[tokio::test]
async fn a_full_listener_makes_room_for_a_new_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let reg = Registry::new(1);
    let stop = CancellationToken::new();
    let mut inc = incoming(listener, reg.clone(), idle(), stop.clone());
    let _c1 = UnixStream::connect(&path).await.unwrap();
    let mut first = inc.next().await.unwrap().unwrap();
    let _c2 = UnixStream::connect(&path).await.unwrap();
    // The first (idle) connection is closed to admit the second.
    eof_within(&mut first, Duration::from_secs(2))
        .await
        .unwrap();
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(2), inc.next())
        .await
        .expect("the second client is admitted")
        .unwrap()
        .unwrap();
    assert_eq!(reg.len(), 1);
    drop(second);
    stop.cancel();
    assert!(
        tokio::time::timeout(Duration::from_secs(1), inc.next())
            .await
            .unwrap()
            .is_none(),
        "the stream ends at shutdown"
    );
}

/// The default idle timeout of a connection.
fn idle() -> Duration {
    Duration::from_secs(crate::config::DEFAULT_CONNECTION_IDLE_SECS)
}
