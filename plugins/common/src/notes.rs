//! Warnings and next actions (注意・次の対応), and which belong to which moment.
//!
//! A formatter builds the full list for `format`; `on-moment` returns the part of it that
//! belongs to the moment (`captured` or `resolved`), chosen by stable code. Keeping one builder
//! means the reception screen and the moment records never word the same warning differently.
#![forbid(unsafe_code)]

use crate::types::{Addition, Moment, NextAction, Severity, Warning};

/// A warning with its code, severity and Japanese text.
pub fn warning(code: &str, severity: Severity, message: impl Into<String>) -> Warning {
    Warning {
        code: code.to_string(),
        severity,
        message: message.into(),
    }
}

/// A next action with its code, Japanese instruction and optional due date.
pub fn action(code: &str, label: impl Into<String>, due: Option<String>) -> NextAction {
    NextAction {
        code: code.to_string(),
        label: label.into(),
        due,
    }
}

/// Which warning and action codes a plugin reports at each moment.
#[derive(Debug, Clone, Copy)]
pub struct MomentCodes {
    /// Codes reported when a check is captured for 事後確認.
    pub captured: &'static [&'static str],
    /// Codes reported when a check's claim basis is decided.
    pub resolved: &'static [&'static str],
}

impl MomentCodes {
    /// The part of `warnings` and `next` that belongs to `at`.
    pub fn select(&self, at: Moment, warnings: &[Warning], next: Option<&NextAction>) -> Addition {
        let codes = match at {
            Moment::Captured => self.captured,
            Moment::Resolved => self.resolved,
        };
        Addition {
            warnings: warnings
                .iter()
                .filter(|w| codes.contains(&w.code.as_str()))
                .cloned()
                .collect(),
            next_action: next.filter(|a| codes.contains(&a.code.as_str())).cloned(),
        }
    }
}

/// Japanese for a severity, as the golden files and logs show it.
pub fn severity_ja(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "お知らせ",
        Severity::Caution => "注意",
        Severity::Warning => "警告",
    }
}
