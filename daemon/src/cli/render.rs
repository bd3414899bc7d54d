//! How a check's report is shown to the operator (Japanese text); `--json` prints the report
//! itself.
//!
//! The personal data printed here is the point of a check (the operator compares it with the
//! patient); it is printed to the operator's own output only, never logged.

use std::io::{self, Write};

use crate::oqs::Qualification;
use crate::view::{CheckReport, ReportStatus};

/// A check's report as Japanese text for the operator.
pub fn report_text(report: &CheckReport, out: &mut dyn Write) -> io::Result<()> {
    check_text(report, out)?;
    if let Some(f) = &report.facility_output {
        facility_text(f, out)?;
    }
    Ok(())
}

fn check_text(report: &CheckReport, out: &mut dyn Write) -> io::Result<()> {
    if report.status == ReportStatus::Captured {
        writeln!(out, "{}", report.message_ja)?;
        for l in &report.instructions_ja {
            writeln!(out, "・{l}")?;
        }
        return Ok(());
    }
    if report.certificate.is_none() {
        // Ended at the card: the message says what happened and what to do.
        return writeln!(out, "{}", report.message_ja);
    }
    let headline = match report.status {
        ReportStatus::Confirmed => "資格確認結果: 有効",
        ReportStatus::Invalid if report.newer_exists => {
            "資格確認結果: 資格（無効）・新しい資格あり"
        }
        ReportStatus::Invalid => "資格確認結果: 資格（無効）",
        ReportStatus::NotFound => "資格確認結果: 資格情報なし",
        ReportStatus::Multiple => "資格確認結果: 複数の資格が該当",
        _ if report.transient => "資格確認結果: 照会できませんでした",
        _ => "資格確認結果: 確認できません",
    };
    writeln!(out, "{headline}")?;
    writeln!(
        out,
        "  受診日: {}　本人確認: {}",
        report.visit_date.format("%Y年%-m月%-d日"),
        report.method.label_ja()
    )?;
    if let Some(q) = &report.qualification {
        qualification_text(q, out)?;
    }
    for (i, q) in report.candidates.iter().enumerate() {
        writeln!(out, "  ― 候補{} ―", i + 1)?;
        qualification_text(q, out)?;
    }
    writeln!(out, "{}", report.message_ja)?;
    for n in &report.notices {
        writeln!(out, "※ {}", n.message_ja)?;
    }
    Ok(())
}

fn qualification_text(q: &Qualification, out: &mut dyn Write) -> io::Result<()> {
    for (label, value) in q.display_lines_ja() {
        writeln!(out, "  {label}: {value}")?;
    }
    Ok(())
}

/// The facility plugin's output, as staff read it under the check.
pub fn facility_text(f: &crate::view::FacilityView, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "【{}】", f.plugin)?;
    let Some(o) = &f.output else {
        if let Some(e) = &f.error_ja {
            writeln!(out, "  {e}")?;
        }
        return Ok(());
    };
    for l in &o.display {
        writeln!(out, "  {l}")?;
    }
    for field in &o.claim_fields {
        writeln!(out, "  {}: {}", field.label, field.value)?;
    }
    for w in &o.warnings {
        let mark = match w.severity.as_str() {
            "warning" => "！",
            "caution" => "※",
            _ => "・",
        };
        writeln!(out, "  {mark} {}", w.message)?;
    }
    if let Some(a) = &o.next_action {
        match a.due {
            Some(d) => writeln!(
                out,
                "  次の対応: {}（{}まで）",
                a.label,
                d.format("%Y年%-m月%-d日")
            )?,
            None => writeln!(out, "  次の対応: {}", a.label)?,
        }
    }
    Ok(())
}
