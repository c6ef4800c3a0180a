//! The broker's schedule, backoff and refresh-ahead under a paused clock:
//! a store in memory, a scripted issuer, and tokio's virtual time, so hours
//! of token life run in microseconds and every instant is exact.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Broker, Clock, DEFAULT_LEAD_MS, Duties, Refresher, inflight};
use crate::oauth::{Failure, TokenResponse};
use crate::secret::Secret;
use crate::store::{CredentialStore, MemoryStore};
use crate::upstream::RefreshError;

const EPOCH: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

/// An issuer that answers from a script, then rotates with `lifetime_secs`
/// tokens, and records when (by the broker's clock) each token was sent.
#[derive(Debug)]
struct Script {
    clock: Clock,
    lifetime_secs: i64,
    answers: Mutex<VecDeque<Result<TokenResponse, RefreshError>>>,
    sent: Mutex<Vec<(i64, String)>>,
}

impl Script {
    fn sent(&self) -> Vec<(i64, String)> {
        self.sent.lock().unwrap().clone()
    }
}

impl Refresher for Script {
    fn refresh<'a>(
        &'a self,
        token: &'a Secret<String>,
    ) -> BoxFuture<'a, Result<TokenResponse, RefreshError>> {
        Box::pin(async move {
            let mut sent = self.sent.lock().unwrap();
            sent.push((self.clock.now_ms(), token.expose().clone()));
            let n = sent.len();
            drop(sent);
            let scripted = self.answers.lock().unwrap().pop_front();
            scripted.unwrap_or_else(|| {
                Ok(TokenResponse {
                    access_token: Secret::new(format!("access-{n}")),
                    refresh_token: Some(Secret::new(format!("refresh-{n}"))),
                    id_token: None,
                    expires_in: Some(self.lifetime_secs),
                })
            })
        })
    }
}

/// A broker on a login expiring `expires_in_ms` from [`EPOCH`], with its
/// schedule running; tokens the script issues live `lifetime_secs`.
async fn broker(
    expires_in_ms: i64,
    lifetime_secs: i64,
    answers: Vec<Result<TokenResponse, RefreshError>>,
) -> (Arc<Broker>, Arc<Script>, Clock, tempfile::TempDir) {
    let memory = MemoryStore::new("paused", Some(login(expires_in_ms).as_bytes()));
    broker_on(memory, lifetime_secs, answers).await
}

/// The store a login expiring `expires_in_ms` from [`EPOCH`] leaves.
fn login(expires_in_ms: i64) -> String {
    format!(
        r#"{{"openai-codex":{{"type":"oauth","access":"access-0","refresh":"refresh-0","expires":{}}}}}"#,
        EPOCH + expires_in_ms
    )
}

/// [`broker`] on a store of the caller's.
async fn broker_on(
    memory: MemoryStore,
    lifetime_secs: i64,
    answers: Vec<Result<TokenResponse, RefreshError>>,
) -> (Arc<Broker>, Arc<Script>, Clock, tempfile::TempDir) {
    let clock = Clock::paused_at(EPOCH);
    let store = CredentialStore::memory(memory);
    let script = Arc::new(Script {
        clock: clock.clone(),
        lifetime_secs,
        answers: Mutex::new(answers.into()),
        sent: Mutex::new(Vec::new()),
    });
    let state = tempfile::tempdir().unwrap();
    let inflight = inflight::InFlight::new(state.path(), &crate::paths::StoreId::named("paused"));
    let broker = Broker::with_parts(
        store,
        script.clone(),
        DEFAULT_LEAD_MS,
        inflight,
        clock.clone(),
        Duties {
            schedule: true,
            changes: None,
        },
    );
    broker.reload().await;
    (broker, script, clock, state)
}

async fn sleep_ms(ms: i64) {
    tokio::time::sleep(Duration::from_millis(u64::try_from(ms).unwrap())).await;
}

#[tokio::test(start_paused = true)]
async fn a_long_token_is_refreshed_once_at_the_lead_not_before() {
    // Two hours left: the lead (35 min) is shorter than half the life.
    let (broker, script, _clock, _state) = broker(120 * MIN, 7200, vec![]).await;
    sleep_ms(85 * MIN - 1_000).await;
    assert!(script.sent().is_empty(), "not before 85 minutes");
    sleep_ms(2_000).await;
    let sent = script.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        (EPOCH + 85 * MIN..EPOCH + 85 * MIN + 1_000).contains(&sent[0].0),
        "sent {} ms after the epoch",
        sent[0].0 - EPOCH
    );
    assert_eq!(sent[0].1, "refresh-0");
    let view = broker.view();
    let codex = view.codex().unwrap();
    assert_eq!(codex.access.expose(), "access-1");
    assert_eq!(codex.expires_ms, sent[0].0 + 7_200_000);
}

#[tokio::test(start_paused = true)]
async fn very_short_tokens_refresh_at_half_life_and_never_reuse() {
    let (broker, script, _clock, _state) = broker(2_000, 2, vec![]).await;
    sleep_ms(10_500).await;
    let sent = script.sent();
    // 2 s tokens, refreshed at half-life: about ten in ten seconds.
    assert!((9..=11).contains(&sent.len()), "{} refreshes", sent.len());
    for (i, (at, token)) in sent.iter().enumerate() {
        assert_eq!(
            token,
            &format!("refresh-{i}"),
            "each token sent once, in order"
        );
        if i > 0 {
            let gap = at - sent[i - 1].0;
            assert!((900..=1_100).contains(&gap), "refresh {i} after {gap} ms");
        }
    }
    assert!(broker.view().codex().unwrap().expires_ms > EPOCH + 10_500);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_is_honoured_before_the_next_attempt() {
    let refused = Err(RefreshError::Rejected(Failure::Transient {
        status: 429,
        message: "slow down".into(),
        retry_after_ms: Some(90_000),
    }));
    // Ten minutes left: due at half-life, 5 minutes from now.
    let (broker, script, _clock, _state) = broker(10 * MIN, 600, vec![refused]).await;
    sleep_ms(5 * MIN + 500).await;
    assert_eq!(script.sent().len(), 1);
    assert!(!broker.view().refresh.last_error.is_empty());
    sleep_ms(85_000).await;
    assert_eq!(
        script.sent().len(),
        1,
        "nothing before the 90 s retry-after"
    );
    sleep_ms(10_000).await;
    let sent = script.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let gap = sent[1].0 - sent[0].0;
    assert!((90_000..91_000).contains(&gap), "retried after {gap} ms");
    assert_eq!(sent[1].1, "refresh-0", "a refused token was not spent");
    assert!(broker.view().refresh.last_error.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_suspend_past_the_due_time_refreshes_within_a_minute_of_waking() {
    let (broker, script, clock, _state) = broker(120 * MIN, 7200, vec![]).await;
    sleep_ms(10 * MIN).await;
    // The laptop sleeps for three hours: the wall clock moves, the
    // monotonic clock does not. The token has expired meanwhile.
    clock.jump(180 * MIN);
    let woke = tokio::time::Instant::now();
    sleep_ms(MIN + 1_000).await;
    let sent = script.sent();
    assert_eq!(sent.len(), 1, "refreshed after the resume: {sent:?}");
    let after = sent[0].0 - (EPOCH + 190 * MIN);
    assert!(
        (0..=60_000).contains(&after),
        "refreshed {after} ms after waking ({:?} of monotonic time)",
        woke.elapsed()
    );
    assert_eq!(broker.view().codex().unwrap().access.expose(), "access-1");
}

/// The suite checks that nothing is re-sent after an unknown outcome or a
/// terminal refusal by asking for a token; the schedule's side of it is
/// checked here, over hours of virtual time rather than seconds of real.
#[tokio::test(start_paused = true)]
async fn a_parked_token_is_never_sent_again_by_the_schedule() {
    let parked = [
        Err(RefreshError::OutcomeUnknown {
            message: "no answer".into(),
        }),
        Err(RefreshError::Rejected(Failure::Terminal {
            code: "refresh_token_reused".into(),
            message: "spent".into(),
        })),
    ];
    for answer in parked {
        let shown = format!("{answer:?}");
        // Due at once: a 2 s token.
        let (broker, script, _clock, _state) = broker(2_000, 2, vec![answer]).await;
        sleep_ms(3 * 60 * MIN).await;
        assert_eq!(script.sent().len(), 1, "{shown}: sent once, never again");
        assert!(
            !broker.view().refresh.last_error.is_empty(),
            "{shown}: the reason is kept for Status"
        );
    }
}

/// Shutdown in the middle of the retries to save a token that lives only in
/// memory ends the keeper at once, with one last save: it lands when the
/// disk has room again, and nothing is sent to the issuer meanwhile.
#[tokio::test(start_paused = true)]
async fn shutdown_during_a_persist_retry_ends_the_keeper_after_one_last_save() {
    for cleared_before_shutdown in [false, true] {
        let memory = MemoryStore::new("full", Some(login(120 * MIN).as_bytes()));
        let (broker, script, _clock, _state) = broker_on(memory.clone(), 7200, vec![]).await;
        memory.set_full(true);
        broker
            .force_refresh()
            .await
            .expect("the refresh itself succeeds");
        assert!(broker.view().refresh.unpersisted);
        // Several retries fail meanwhile (0.5 s, 1 s, 2 s, 4 s, ...).
        sleep_ms(10_000).await;
        assert!(broker.view().refresh.unpersisted, "the disk is still full");
        let on_disk = String::from_utf8(memory.read().unwrap()).unwrap();
        assert!(on_disk.contains("refresh-0"), "{on_disk}");

        memory.set_full(!cleared_before_shutdown);
        broker.quiesce().await;
        let on_disk = String::from_utf8(memory.read().unwrap()).unwrap();
        assert_eq!(
            on_disk.contains("refresh-1"),
            cleared_before_shutdown,
            "the last save lands exactly when there is room: {on_disk}"
        );
        let after = broker.force_refresh().await.unwrap_err();
        assert!(after.to_string().contains("shutting down"), "{after}");
        assert_eq!(script.sent().len(), 1, "one refresh in all");
    }
}
