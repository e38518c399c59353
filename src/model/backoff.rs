//! Retry schedule of a group: how long a failed event waits before its next
//! attempt (DESIGN §1.4).
//!
//! Model layer, pure functions.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Exponential backoff between attempts:
/// `min(max_backoff, min_backoff * multiplier^(attempt-1))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Wait after the first failure.
    #[serde(with = "humantime_serde")]
    pub min_backoff: Duration,
    /// Upper bound of any wait.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Growth per further failure; at least 1.0.
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// Delay before the next attempt after `failed_attempt` (1-based) failed.
    pub fn delay(&self, failed_attempt: u32) -> Duration {
        let exponent = failed_attempt.saturating_sub(1).min(1_000) as i32;
        let factor = self.multiplier.max(1.0).powi(exponent);
        let secs = self.min_backoff.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max_backoff.as_secs_f64() {
            return self.max_backoff;
        }
        Duration::from_secs_f64(secs).min(self.max_backoff)
    }

    /// Checks the policy is usable.
    ///
    /// # Errors
    /// A message naming the field that is out of range.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0 && self.multiplier <= 100.0) {
            return Err((
                "retry_policy.multiplier",
                format!("must be between 1.0 and 100.0, got {}", self.multiplier),
            ));
        }
        if self.max_backoff < self.min_backoff {
            return Err((
                "retry_policy.max_backoff",
                format!(
                    "{:?} is shorter than min_backoff {:?}",
                    self.max_backoff, self.min_backoff
                ),
            ));
        }
        if self.max_backoff > Duration::from_secs(24 * 3600) {
            return Err(("retry_policy.max_backoff", "must be at most 24h".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_doubles_and_caps() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=9).map(|a| p.delay(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn multiplier_one_is_constant_and_bad_policies_are_rejected() {
        let p = RetryPolicy {
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(1),
            multiplier: 1.0,
        };
        assert_eq!(p.delay(7), Duration::from_millis(250));
        assert!(p.check().is_ok());
        assert!(
            RetryPolicy {
                multiplier: 0.5,
                ..p
            }
            .check()
            .is_err()
        );
        assert!(
            RetryPolicy {
                multiplier: f64::NAN,
                ..p
            }
            .check()
            .is_err()
        );
        assert!(
            RetryPolicy {
                max_backoff: Duration::from_millis(1),
                ..p
            }
            .check()
            .is_err()
        );
    }
}
