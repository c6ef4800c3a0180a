//! Refresh ahead of expiry, on a timer: no polling. The task sleeps until
//! the next due time of the current snapshot and wakes early whenever the
//! snapshot changes (a refresh, a reload, a login). The due time is wall
//! clock; the sleep looks at the wall clock again at least every minute
//! ([`super::clock::RECHECK`]), so a laptop that slept through it refreshes
//! within a minute of waking, not after the suspend's length again.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Broker;
use super::refresh::Need;

/// Runs the refresh schedule until `shutdown` is cancelled.
pub async fn run_schedule(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut changes = broker.subscribe();
    loop {
        let due = changes.borrow_and_update().next_refresh_ms();
        let sleep = async {
            match due {
                Some(at) => broker.clock.sleep_until_ms(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = sleep => {
                tracing::debug!("scheduled refresh is due");
                // Errors are recorded in the snapshot (backoff, needs_login).
                let _ = broker.refresh_flight(Need::Scheduled).await;
            }
        }
    }
}
