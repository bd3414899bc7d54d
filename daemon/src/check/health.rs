//! Health of the qualification system (回線状態): a circuit breaker moved by real answers.
//!
//! Online: every check asks. After a failure: degraded (still asks, within the time
//! budget). After several failures in a row: offline — checks are captured at once without
//! waiting, and only a probe now and then asks whether the line is back. Any success brings
//! it online again. Pure: the time is passed in.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The state of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineState {
    /// Answers come.
    Online,
    /// Some recent answers failed; still asking.
    Degraded,
    /// Failing: capture without asking; probe now and then.
    Offline,
}

impl LineState {
    /// Japanese label for staff.
    pub fn label_ja(self) -> &'static str {
        match self {
            LineState::Online => "オンライン",
            LineState::Degraded => "不安定（応答が遅い・失敗あり）",
            LineState::Offline => "オフライン（資格確認システムにつながりません）",
        }
    }
}

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// Failures in a row that make the line offline.
    pub offline_after: u32,
    /// How often to probe while offline.
    pub probe_every: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            offline_after: 3,
            probe_every: Duration::from_secs(10),
        }
    }
}

/// The breaker.
#[derive(Debug, Clone)]
pub struct Health {
    config: HealthConfig,
    state: LineState,
    failures: u32,
    last_probe: Option<Instant>,
}

impl Health {
    /// Starts online: the first real answer corrects it.
    pub fn new(config: HealthConfig) -> Self {
        Self {
            config,
            state: LineState::Online,
            failures: 0,
            last_probe: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> LineState {
        self.state
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// An answer came (any answer the system gave, even 資格情報なし).
    pub fn on_success(&mut self) {
        self.failures = 0;
        self.state = LineState::Online;
    }

    /// No answer in time, refused, 5xx, malformed or rate-limited.
    pub fn on_failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.state = if self.failures >= self.config.offline_after {
            LineState::Offline
        } else {
            LineState::Degraded
        };
        if self.state == LineState::Offline {
            self.last_probe = Some(now);
        }
    }

    /// Whether a check should ask the system now (offline: capture at once).
    pub fn should_ask(&self) -> bool {
        self.state != LineState::Offline
    }

    /// Whether a probe is due (always while not offline, so the state stays fresh).
    pub fn probe_due(&self, now: Instant) -> bool {
        match (self.state, self.last_probe) {
            (LineState::Offline, Some(at)) => now.duration_since(at) >= self.config.probe_every,
            _ => true,
        }
    }

    /// Records that a probe was sent.
    pub fn probed(&mut self, now: Instant) {
        self.last_probe = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_between_online_degraded_and_offline() {
        let t0 = Instant::now();
        let mut h = Health::new(HealthConfig::default());
        assert_eq!(h.state(), LineState::Online);
        h.on_failure(t0);
        assert_eq!(h.state(), LineState::Degraded);
        assert!(h.should_ask());
        h.on_failure(t0);
        h.on_failure(t0);
        assert_eq!(h.state(), LineState::Offline);
        assert!(!h.should_ask(), "offline: capture without waiting");
        assert!(!h.probe_due(t0 + Duration::from_secs(5)));
        assert!(h.probe_due(t0 + Duration::from_secs(10)));
        h.probed(t0 + Duration::from_secs(10));
        h.on_failure(t0 + Duration::from_secs(10));
        assert!(!h.probe_due(t0 + Duration::from_secs(15)));
        h.on_success();
        assert_eq!(h.state(), LineState::Online);
        assert_eq!(h.failures(), 0);
        // A single failure after recovery only degrades.
        h.on_failure(t0 + Duration::from_secs(30));
        assert_eq!(h.state(), LineState::Degraded);
    }
}
