//! Golden tests for facility plugins (ゴールデンテスト): the same checks through every plugin.
//!
//! Each plugin's test calls [`run`] with its `Guest` type. The harness formats a fixed set of
//! checks (valid, 旧資格, 不詳, a document shown, captured offline on a first and a later visit,
//! overdue, another facility's check), calls `on-moment` at both moments, renders everything as
//! readable text and compares it with `golden/<name>.txt` in the plugin's directory. With
//! `UPDATE_GOLDEN=1` it writes the file instead. A mismatch fails with a line diff.
//!
//! It also asserts what must hold for every plugin whatever the golden file says: no staff text
//! carries an internal rule id, a 不詳 claim's fields are 7-filled on receipts, and a 療養費
//! form never carries 7-filled numbers.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::Path;

use crate::bindings::Guest;
use crate::notes::severity_ja;
use crate::text::{has_rule_id, is_seven_filled};
use crate::types::{
    Addition, AnswerStatus, Basis, Check, Claim, Declaration, Facility, Failure, Identity, Moment,
    Numbers, Output, Qualification,
};

/// One named check in the golden set.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Stable name, used as the section title.
    pub name: &'static str,
    /// What the check is, in a few words.
    pub about: &'static str,
    /// The check.
    pub check: Check,
}

fn numbers(insurer: &str, symbol: Option<&str>, number: &str, branch: Option<&str>) -> Numbers {
    Numbers {
        insurer: insurer.to_string(),
        symbol: symbol.map(str::to_string),
        number: number.to_string(),
        branch: branch.map(str::to_string),
    }
}

fn base(facility: Facility, id: &str) -> Check {
    Check {
        id: id.to_string(),
        facility,
        visit_date: "2026-05-12".to_string(),
        first_visit: false,
        next_visit: Some("2026-05-19".to_string()),
        identity: Identity::Pin,
        document: None,
        captured_offline: false,
        answer: None,
        qualification: None,
        known_numbers: None,
        copay_tenths: Some(3),
        claim: None,
        declaration: None,
        due: None,
        overdue: false,
    }
}

fn claim(basis: Basis, numbers: Numbers, summary: &str) -> Claim {
    Claim {
        basis,
        numbers,
        remarks: None,
        payer: None,
        summary: summary.to_string(),
        final_: false,
    }
}

/// The golden checks, made at `facility`.
pub fn fixtures(facility: Facility) -> Vec<Fixture> {
    let kyokai = numbers("01130012", Some("12345678"), "42", Some("00"));
    let old_kumiai = numbers("06139876", Some("5021"), "118", Some("01"));
    let kokuho = numbers("138016", Some("千代田"), "204517", Some("01"));
    let kouki = numbers("39131012", None, "00471234", None);
    let unknown = numbers("77777777", Some("7777"), "7777777", None);

    let mut out = Vec::new();

    let mut c = base(facility, "01JV7K0000000000000000VALD");
    c.answer = Some(AnswerStatus::Confirmed);
    c.qualification = Some(Qualification {
        numbers: kyokai.clone(),
        insurer_name: Some("全国健康保険協会 東京支部".to_string()),
        birth_date: Some("1984-09-03".to_string()),
        copay_tenths: Some(3),
        newer_exists: false,
    });
    c.claim = Some(claim(
        Basis::Current,
        kyokai,
        "オンライン資格確認の番号で請求します。",
    ));
    out.push(Fixture {
        name: "valid",
        about: "有効（マイナ保険証・暗証番号）",
        check: c,
    });

    let mut c = base(facility, "01JV7K00000000000000000OLD");
    c.identity = Identity::Visual;
    c.answer = Some(AnswerStatus::Invalid);
    c.qualification = Some(Qualification {
        numbers: old_kumiai.clone(),
        insurer_name: Some("つなぎ健康保険組合".to_string()),
        birth_date: Some("1991-02-14".to_string()),
        copay_tenths: Some(3),
        newer_exists: true,
    });
    c.claim = Some(claim(
        Basis::Old,
        old_kumiai,
        "新しい番号が分かるまで、旧資格で請求します。",
    ));
    c.due = Some("2026-06-30".to_string());
    out.push(Fixture {
        name: "old-qualification",
        about: "資格（無効）・新しい資格あり、旧資格で請求",
        check: c,
    });

    let mut c = base(facility, "01JV7K000000000000000UNKWN");
    c.identity = Identity::Visual;
    c.answer = Some(AnswerStatus::NotFound);
    c.first_visit = true;
    c.declaration = Some(Declaration {
        name: Some("山田 花子".to_string()),
        birth_date: Some("1979-11-20".to_string()),
        address: Some("東京都千代田区霞が関1-2-2".to_string()),
        phone: Some("03-5253-1111".to_string()),
        insurer_name: None,
        employer: Some("株式会社つなぎ".to_string()),
        copay_tenths: Some(3),
    });
    let mut unknown_claim = claim(
        Basis::Unknown,
        unknown.clone(),
        "番号が分からないため、資格不詳で請求します。",
    );
    unknown_claim.remarks = Some(
        "被保険者資格申立書による。住所 東京都千代田区霞が関1-2-2、事業所 株式会社つなぎ、連絡先 03-5253-1111"
            .to_string(),
    );
    unknown_claim.payer = Some("支払基金".to_string());
    c.claim = Some(unknown_claim);
    c.due = Some("2026-06-30".to_string());
    out.push(Fixture {
        name: "unknown",
        about: "資格情報なし、申立書あり、資格不詳で請求",
        check: c,
    });

    let mut c = base(facility, "01JV7K000000000000000UNDCL");
    c.identity = Identity::Visual;
    c.answer = Some(AnswerStatus::CardRefused);
    c.first_visit = true;
    c.copay_tenths = None;
    c.claim = Some(claim(Basis::Unknown, unknown, ""));
    c.due = Some("2026-06-30".to_string());
    out.push(Fixture {
        name: "unknown-without-declaration",
        about: "カードが使えず、申立書なし、資格不詳",
        check: c,
    });

    let mut c = base(facility, "01JV7K000000000000000BADFL");
    c.identity = Identity::Visual;
    c.answer = Some(AnswerStatus::NotFound);
    c.claim = Some(claim(
        Basis::Unknown,
        numbers("99999999", Some("999"), "999999999", None),
        "",
    ));
    out.push(Fixture {
        name: "unknown-not-seven-filled",
        about: "資格不詳なのに9埋め（災害用の番号と取り違え）",
        check: c,
    });

    let mut c = base(facility, "01JV7K0000000000000000DOCU");
    c.identity = Identity::Document;
    c.document = Some("kakuninsho".to_string());
    c.first_visit = true;
    c.known_numbers = Some(kouki.clone());
    c.copay_tenths = Some(1);
    c.claim = Some(claim(
        Basis::Current,
        kouki,
        "資格確認書の番号で請求します。",
    ));
    out.push(Fixture {
        name: "document",
        about: "資格確認書を提示（後期高齢者）",
        check: c,
    });

    let mut c = base(facility, "01JV7K000000000000000OFFL1");
    c.identity = Identity::Visual;
    c.first_visit = true;
    c.captured_offline = true;
    c.due = Some("2026-06-30".to_string());
    out.push(Fixture {
        name: "offline-first-visit",
        about: "オフライン受付・初回・番号の控えなし・未確認",
        check: c,
    });

    let mut c = base(facility, "01JV7K000000000000000OFFL2");
    c.identity = Identity::Visual;
    c.captured_offline = true;
    c.known_numbers = Some(kokuho);
    c.due = Some("2026-06-30".to_string());
    out.push(Fixture {
        name: "offline-returning",
        about: "オフライン受付・再来・国保の番号の控えあり・未確認",
        check: c,
    });

    let mut c = base(facility, "01JV7K0000000000000OVERDUE");
    c.visit_date = "2026-03-27".to_string();
    c.next_visit = None;
    c.identity = Identity::Visual;
    c.first_visit = true;
    c.captured_offline = true;
    c.due = Some("2026-04-30".to_string());
    c.overdue = true;
    out.push(Fixture {
        name: "overdue",
        about: "オフライン受付のまま事後確認の期限切れ",
        check: c,
    });

    let other = if facility == Facility::Medical {
        Facility::Dental
    } else {
        Facility::Medical
    };
    let mut c = base(other, "01JV7K0000000000000000OTHR");
    c.answer = Some(AnswerStatus::Confirmed);
    out.push(Fixture {
        name: "other-facility",
        about: "別の施設種類の確認",
        check: c,
    });
    out
}

/// Which claim form a plugin writes, for the assertions that differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A レセプト (医科・歯科・調剤・訪問看護): 不詳 fields are 7-filled.
    Receipt,
    /// A 療養費支給申請書 (柔整・あはき): never 7-filled.
    Ryoyohi,
}

/// Formats every fixture with `G`, checks the invariants and compares with the golden file.
///
/// `dir` is the plugin's `CARGO_MANIFEST_DIR`; the file is `dir/golden/<name>.txt`.
pub fn run<G: Guest>(dir: &str, name: &str, facility: Facility, form: Form) {
    let text = render::<G>(name, facility, form);
    let path = Path::new(dir).join("golden").join(format!("{name}.txt"));
    compare(&path, &text);
}

fn render<G: Guest>(name: &str, facility: Facility, form: Form) -> String {
    let mut s = String::new();
    let info = G::describe();
    assert_staff_text(&info.name, "describe.name");
    let _ = writeln!(s, "# Golden output of the {name} plugin.");
    let _ = writeln!(
        s,
        "# Regenerate with: UPDATE_GOLDEN=1 cargo test -p tsunagi-plugin-{name}"
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "describe");
    let _ = writeln!(s, "  name: {}", info.name);
    let _ = writeln!(s, "  version: {}", info.version);
    let facilities: Vec<&str> = info.facilities.iter().map(|f| facility_code(*f)).collect();
    let _ = writeln!(s, "  facilities: {}", facilities.join(", "));
    assert!(
        info.facilities.contains(&facility),
        "{name}: describe() must list {facility:?}"
    );
    for fixture in fixtures(facility) {
        let _ = writeln!(s);
        let _ = writeln!(s, "== {}: {}", fixture.name, fixture.about);
        let formatted = G::format(fixture.check.clone());
        match &formatted {
            Ok(output) => {
                check_output(fixture.name, output, form);
                render_output(&mut s, output);
            }
            Err(failure) => render_failure(&mut s, "format", failure),
        }
        if fixture.check.facility != facility {
            assert!(
                matches!(formatted, Err(Failure::Unsupported(_))),
                "{}: another facility's check must be unsupported",
                fixture.name
            );
        }
        for (at, label) in [
            (Moment::Captured, "on-moment captured"),
            (Moment::Resolved, "on-moment resolved"),
        ] {
            match G::on_moment(at, fixture.check.clone()) {
                Ok(addition) => {
                    check_addition(fixture.name, &addition);
                    render_addition(&mut s, label, &addition);
                }
                Err(failure) => render_failure(&mut s, label, &failure),
            }
        }
    }
    s
}

/// The facility's WIT name (kebab-case), as the host and logs spell it.
fn facility_code(facility: Facility) -> &'static str {
    match facility {
        Facility::Medical => "medical",
        Facility::Dental => "dental",
        Facility::Pharmacy => "pharmacy",
        Facility::Judo => "judo",
        Facility::Ahaki => "ahaki",
        Facility::HomeNursing => "home-nursing",
    }
}

fn render_output(s: &mut String, o: &Output) {
    let _ = writeln!(s, "format");
    let _ = writeln!(s, "  claim fields");
    for f in &o.claim_fields {
        let _ = writeln!(s, "    {} | {} | {}", f.key, f.label, f.value);
    }
    let _ = writeln!(s, "  display");
    for line in &o.display {
        let _ = writeln!(s, "    {line}");
    }
    let _ = writeln!(s, "  read-aloud");
    let _ = writeln!(s, "    {}", o.read_aloud);
    render_notes(s, &o.warnings, o.next_action.as_ref());
}

fn render_addition(s: &mut String, label: &str, a: &Addition) {
    let _ = writeln!(s, "{label}");
    render_notes(s, &a.warnings, a.next_action.as_ref());
}

fn render_notes(
    s: &mut String,
    warnings: &[crate::types::Warning],
    next: Option<&crate::types::NextAction>,
) {
    if warnings.is_empty() {
        let _ = writeln!(s, "  warnings: none");
    } else {
        let _ = writeln!(s, "  warnings");
        for w in warnings {
            let _ = writeln!(
                s,
                "    [{}] {}: {}",
                severity_ja(w.severity),
                w.code,
                w.message
            );
        }
    }
    match next {
        Some(a) => {
            let due = a
                .due
                .as_deref()
                .map(|d| format!(" (due {d})"))
                .unwrap_or_default();
            let _ = writeln!(s, "  next action: {}{due}: {}", a.code, a.label);
        }
        None => {
            let _ = writeln!(s, "  next action: none");
        }
    }
}

fn render_failure(s: &mut String, label: &str, failure: &Failure) {
    let (kind, message) = match failure {
        Failure::Unsupported(m) => ("unsupported", m),
        Failure::Incomplete(m) => ("incomplete", m),
    };
    assert_staff_text(message, label);
    let _ = writeln!(s, "{label}");
    let _ = writeln!(s, "  failure {kind}: {message}");
}

fn assert_staff_text(text: &str, what: &str) {
    assert!(
        !has_rule_id(text),
        "{what}: staff text must not name internal rule ids: {text}"
    );
    assert!(!text.trim().is_empty(), "{what}: staff text is empty");
}

fn check_output(name: &str, o: &Output, form: Form) {
    for f in &o.claim_fields {
        assert_staff_text(&f.label, name);
        assert!(
            !has_rule_id(&f.value),
            "{name}: field {} names a rule id",
            f.key
        );
    }
    for line in &o.display {
        assert_staff_text(line, name);
    }
    assert_staff_text(&o.read_aloud, name);
    check_notes(name, &o.warnings, o.next_action.as_ref());
    let value = |key: &str| {
        o.claim_fields
            .iter()
            .find(|f| f.key == key)
            .map(|f| f.value.as_str())
    };
    let unknown = value("basis") == Some("資格不詳");
    match form {
        Form::Receipt => {
            for key in ["insurer-number", "symbol", "number", "branch"] {
                assert!(value(key).is_some(), "{name}: receipt field {key} missing");
            }
            if unknown {
                // A 不詳 claim: 保険者番号 and 記号・番号 are the digit 7 to their lengths.
                let insurer = value("insurer-number").unwrap_or_default();
                let number = value("number").unwrap_or_default();
                let symbol = value("symbol").unwrap_or_default();
                assert!(
                    is_seven_filled(insurer, true),
                    "{name}: 不詳 保険者番号 {insurer}"
                );
                assert!(is_seven_filled(number, false), "{name}: 不詳 番号 {number}");
                assert!(
                    symbol.is_empty() || is_seven_filled(symbol, false),
                    "{name}: 不詳 記号 {symbol}"
                );
                assert!(value("remarks").is_some(), "{name}: 不詳 needs 摘要欄");
                assert!(value("payer").is_some(), "{name}: 不詳 needs a payer");
            }
        }
        Form::Ryoyohi => {
            assert!(value("branch").is_none(), "{name}: 療養費 writes no 枝番");
            for f in &o.claim_fields {
                assert!(
                    !(f.value.len() >= 3 && f.value.chars().all(|c| c == '7')),
                    "{name}: 療養費 has no 7-filled 不詳 claim ({})",
                    f.key
                );
            }
        }
    }
}

fn check_addition(name: &str, a: &Addition) {
    check_notes(name, &a.warnings, a.next_action.as_ref());
}

fn check_notes(
    name: &str,
    warnings: &[crate::types::Warning],
    next: Option<&crate::types::NextAction>,
) {
    for w in warnings {
        assert_staff_text(&w.message, name);
        assert!(is_kebab(&w.code), "{name}: warning code {}", w.code);
    }
    if let Some(a) = next {
        assert_staff_text(&a.label, name);
        assert!(is_kebab(&a.code), "{name}: action code {}", a.code);
    }
}

fn is_kebab(code: &str) -> bool {
    !code.is_empty()
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Compares `actual` with the file at `path`, or writes it when `UPDATE_GOLDEN` is set.
pub fn compare(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {dir:?}: {e}"));
        }
        std::fs::write(path, actual).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {path:?}: {e}\n(run with UPDATE_GOLDEN=1 to create it)"));
    if expected != actual {
        panic!(
            "golden file {} differs (- expected, + actual); if the change is intended, \
             run with UPDATE_GOLDEN=1 and review the diff:\n{}",
            path.display(),
            diff(&expected, actual)
        );
    }
}

/// A line diff (longest common subsequence) with two lines of context around each change.
pub fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: length of the common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        let lo = k.saturating_sub(2);
        let hi = (k + 2).min(ops.len().saturating_sub(1));
        (lo..=hi).any(|x| ops[x].0 != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if near_change(k) {
            if skipped {
                out.push_str("   ...\n");
                skipped = false;
            }
            let _ = writeln!(out, "{op}  {line}");
        } else {
            skipped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_changed_lines_with_context() {
        let d = diff("a\nb\nc\nd\ne\nf\ng\n", "a\nb\nc\nD\ne\nf\ng\n");
        assert!(d.contains("-  d\n+  D\n"), "{d}");
        // It keeps two lines of context and elides the rest.
        assert!(d.starts_with("   ...\n   b\n"), "{d}");
        assert!(!d.contains("   a\n"), "{d}");
    }
}
