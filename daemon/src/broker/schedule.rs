//! Refresh ahead of expiry, on a timer: no polling. The task sleeps until
//! the next due time of the current snapshot and wakes early whenever the
//! snapshot changes (a refresh, a reload, a login).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::refresh::Need;
use super::{Broker, now_ms};

/// Runs the refresh schedule until `shutdown` is cancelled.
pub async fn run_schedule(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut changes = broker.subscribe();
    loop {
        let due = changes.borrow_and_update().next_refresh_ms();
        let sleep = async {
            match due {
                Some(at) => {
                    let wait = (at - now_ms()).max(0) as u64;
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
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
