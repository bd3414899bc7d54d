//! The CLI's exit codes (終了コード), in one place:
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | done; for `check`, the qualification is confirmed (有効) |
//! | 1 | not confirmed: invalid, not found, several matches, or refused (wrong PIN, …) |
//! | 2 | error: the command could not do its work (reader, store, settings, no answer) |
//! | 3 | `check`: captured for 事後確認 (オフライン受付) — collect the normal co-payment |

use crate::view::{CheckReport, ReportStatus};

/// Done / confirmed.
pub const OK: i32 = 0;
/// Not confirmed.
pub const NOT_CONFIRMED: i32 = 1;
/// Error.
pub const ERROR: i32 = 2;
/// Captured for 事後確認.
pub const CAPTURED: i32 = 3;

/// The help text's summary of the codes.
pub const HELP: &str = "終了コード: 0 = 完了（check は資格が有効）、1 = 確認できず（無効・該当なし・複数該当・暗証番号の誤りなど）、2 = エラー、3 = オフライン受付（事後確認待ちとして記録）";

/// The exit code of a check's report.
pub fn of_report(report: &CheckReport) -> i32 {
    match report.status {
        ReportStatus::Confirmed => OK,
        ReportStatus::Captured => CAPTURED,
        ReportStatus::Invalid
        | ReportStatus::NotFound
        | ReportStatus::Multiple
        | ReportStatus::Refused => NOT_CONFIRMED,
        ReportStatus::Error => ERROR,
    }
}
