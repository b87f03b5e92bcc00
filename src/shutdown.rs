//! Shutdown as a value: one trigger, any number of listeners that can ask
//! whether it has begun or wait for it. Cheap to clone; a listener created
//! after the trigger fired sees it at once.

use tokio::sync::watch;

/// Fires the shutdown (once; later calls do nothing more).
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Waits for the shutdown.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl ShutdownTrigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// A listener that never fires, for code run without a server.
    pub fn never() -> Shutdown {
        let (trigger, shutdown) = Self::new();
        // The sender lives on inside the receiver's channel; dropping the
        // trigger only means nobody can fire it.
        drop(trigger);
        shutdown
    }

    pub fn has_begun(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has begun (at once if it already has). A
    /// trigger dropped without firing never resolves it.
    pub async fn wait(&mut self) {
        if self.0.wait_for(|begun| *begun).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_see_the_trigger_whenever_they_look() {
        let (trigger, mut early) = Shutdown::new();
        assert!(!early.has_begun());
        let waiting = tokio::spawn(async move { early.wait().await });
        trigger.fire();
        waiting.await.unwrap();
        // A listener made after the trigger fired resolves at once.
        let (trigger, shutdown) = Shutdown::new();
        trigger.fire();
        let mut late = shutdown.clone();
        late.wait().await;
        assert!(late.has_begun());
    }

    #[tokio::test]
    async fn never_never_resolves() {
        let mut never = Shutdown::never();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), never.wait()).await;
        assert!(waited.is_err());
        assert!(!never.has_begun());
    }
}
