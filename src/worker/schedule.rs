//! The periodic syncs of channels: a task that starts each channel's sync
//! when it is due (`next_sync_at`, which every sync moves by its interval
//! ±10 %), and sleeps until the next one is, or until a channel is made,
//! changed or synced.

use std::time::Duration;

use crate::domain::Timestamp;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// The longest sleep between looks, in case a sync ended without moving
/// its channel's next sync (a stop, a storage fault).
const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(30);

/// Runs until the shutdown fires.
pub async fn run(store: Store, mut shutdown: Shutdown) {
    loop {
        // Registered before looking, so a change between the look and the
        // wait is not lost.
        let changed = store.channels_changed().notified();
        let sleep = due_now(&store).await;
        tokio::select! {
            () = changed => {}
            () = tokio::time::sleep(sleep) => {}
            () = shutdown.wait() => return,
        }
    }
}

/// Starts the syncs that are due; returns how long until the next one is.
async fn due_now(store: &Store) -> Duration {
    let channels = match store.list_channels() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the channels; looking again in 30s");
            return LOOK_AT_LEAST_EVERY;
        }
    };
    let now = Timestamp::now();
    let mut sleep = LOOK_AT_LEAST_EVERY;
    for c in channels.into_iter().filter(|c| c.operation_id.is_none()) {
        if c.next_sync_at <= now {
            if let Err(e) = store.start_sync(c.id).await {
                tracing::warn!(channel = %c.url, error = %e, "cannot start a sync");
            }
            continue;
        }
        let until = u64::try_from(c.next_sync_at.as_micros() - now.as_micros()).unwrap_or(0);
        sleep = sleep.min(Duration::from_micros(until));
    }
    sleep
}
