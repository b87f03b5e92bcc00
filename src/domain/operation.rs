//! Operations: the long-running status changes of a package, and the rules
//! of their life (states, retries with backoff).

use std::fmt;
use std::time::Duration;

use uuid::Uuid;

use super::Timestamp;
use super::package::OperationKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl OperationState {
    pub const ALL: [OperationState; 5] = [
        OperationState::Queued,
        OperationState::Running,
        OperationState::Succeeded,
        OperationState::Failed,
        OperationState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::Queued => "queued",
            OperationState::Running => "running",
            OperationState::Succeeded => "succeeded",
            OperationState::Failed => "failed",
            OperationState::Cancelled => "cancelled",
        }
    }

    /// Finished operations never change again.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            OperationState::Succeeded | OperationState::Failed | OperationState::Cancelled
        )
    }
}

impl fmt::Display for OperationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status change of one package, queued or in flight or done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: Uuid,
    pub package_id: Uuid,
    pub kind: OperationKind,
    pub state: OperationState,
    /// 0 to 100; kept across retries and restarts, so work resumes where it stopped.
    pub progress: u8,
    /// How many times a worker has started (or resumed) it.
    pub attempts: u32,
    /// The error of the last failed attempt.
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// A client asked to cancel while it ran; the worker stops at its next step.
    pub cancel_requested: bool,
}

/// Delay before retry number `attempt` (1 is the first retry): `base` doubled
/// each time, capped at `max`, then spread by up to ±50 % (`jitter` in 0..1)
/// so that many failures at once do not retry in lock step.
pub fn backoff(base: Duration, attempt: u32, max: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max);
    capped.mul_f64(0.5 + jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        assert_eq!(backoff(base, 1, max, 0.5), Duration::from_millis(100));
        assert_eq!(backoff(base, 2, max, 0.5), Duration::from_millis(200));
        assert_eq!(backoff(base, 3, max, 0.5), Duration::from_millis(400));
        assert_eq!(backoff(base, 9, max, 0.5), max);
        assert_eq!(backoff(base, 99, max, 0.5), max);
        assert_eq!(backoff(base, 1, max, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(base, 1, max, 1.0), Duration::from_millis(150));
    }

    #[test]
    fn finished_states() {
        let finished: Vec<_> = OperationState::ALL
            .iter()
            .filter(|s| s.is_finished())
            .collect();
        assert_eq!(finished.len(), 3);
        assert!(!OperationState::Running.is_finished());
    }
}
