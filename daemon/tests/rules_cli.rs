//! The staff CLI of the rules and the usage report, driven in memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::path::Path;

use chrono::NaiveDate;
use tsunagi::cli::rules::{
    run_report, run_rules, CliError, DocumentArgs, ExemptionArgs, KakuninshoArgs, ReportCommand,
    RulesCommand, UsageArgs,
};

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 6, 15).unwrap()
}

/// Runs a rules command; returns (exit code or error, output).
fn rules(cmd: RulesCommand, input: &str, interactive: bool) -> (Result<i32, CliError>, String) {
    let mut out = Vec::new();
    let mut inp = Cursor::new(input.as_bytes().to_vec());
    let settings = tsunagi::rules::settings::RuleSettings::default();
    let r = run_rules(&cmd, today(), &settings, &mut out, &mut inp, interactive);
    (r, String::from_utf8(out).unwrap())
}

fn doc(kind: &str, expires: Option<&str>, visit: &str) -> RulesCommand {
    RulesCommand::Document(DocumentArgs {
        kind: kind.into(),
        expires: expires.map(Into::into),
        visit: Some(visit.into()),
        with_card: false,
        insurer: None,
    })
}

#[test]
fn document_command() {
    let (r, out) = rules(
        doc("kakuninsho", Some("2026-07-31"), "2026-07-31"),
        "",
        false,
    );
    assert_eq!(r.unwrap(), 0, "{out}");
    assert!(
        out.contains("受け付けられます")
            && out.contains("資格確認書は有効期限")
            && out.contains("根拠: 受診時に提示できる書類")
            && !out.contains("R10"),
        "{out}"
    );

    let (r, out) = rules(doc("hokensho", Some("2027-03-31"), "2026-04-01"), "", false);
    assert_eq!(r.unwrap(), 1);
    assert!(
        out.contains("受け付けられません") && out.contains("申立書"),
        "{out}"
    );

    // A 6-digit 国保 number makes the お知らせ acceptable from 2025-08-01.
    let cmd = RulesCommand::Document(DocumentArgs {
        kind: "oshirase".into(),
        expires: None,
        visit: Some("2025-08-01".into()),
        with_card: false,
        insurer: Some("139917".into()),
    });
    assert_eq!(rules(cmd, "", false).0.unwrap(), 0);
}

#[test]
fn bad_input_is_refused_in_japanese() {
    let cases: Vec<(RulesCommand, &str)> = vec![
        (
            doc("passport", None, "2025-01-01"),
            "書類の種類「passport」",
        ),
        (
            doc("kakuninsho", Some("2025-02-30"), "2025-01-01"),
            "2025年2月30日 は存在しない日付",
        ),
        (
            doc("kakuninsho", Some("2025-01-01"), "2025/13/01"),
            "2025年13月1日",
        ),
        (
            doc("kakuninsho", Some("tomorrow"), "2025-01-01"),
            "読み取れません",
        ),
        (doc("kakuninsho", None, "2025-01-01"), "--expires"),
        (
            RulesCommand::Document(DocumentArgs {
                kind: "oshirase".into(),
                expires: None,
                visit: Some("2025-08-01".into()),
                with_card: false,
                insurer: Some("12345".into()),
            }),
            "6桁または8桁",
        ),
        (
            RulesCommand::Document(DocumentArgs {
                kind: "oshirase".into(),
                expires: None,
                visit: Some("2025-08-01".into()),
                with_card: false,
                insurer: Some("06A39917".into()),
            }),
            "数字以外",
        ),
        (
            RulesCommand::Kakuninsho(KakuninshoArgs {
                date: Some("2026-09-01".into()),
                newborn: Some("no".into()),
                card: Some("registered".into()),
                certificate_expired: Some("no".into()),
                viewing_blocked: Some("no".into()),
                late_elderly: Some("yes".into()),
                birth: Some("2027-01-01".into()),
                ..Default::default()
            }),
            "生年月日",
        ),
        (
            RulesCommand::Kakuninsho(KakuninshoArgs {
                newborn: Some("maybe".into()),
                ..Default::default()
            }),
            "「maybe」が分かりません",
        ),
        (
            RulesCommand::Exemption(ExemptionArgs {
                facility: Some("clinic".into()),
                ..Default::default()
            }),
            "施設種別「clinic」",
        ),
    ];
    for (cmd, want) in cases {
        let (r, _) = rules(cmd, "", false);
        let msg = r.unwrap_err().message_ja();
        assert!(msg.contains(want), "want {want:?} in {msg:?}");
    }
}

#[test]
fn kakuninsho_flags_and_questions() {
    // All by flags, non-interactive: a working マイナ保険証 → not issued (exit 1).
    let args = KakuninshoArgs {
        date: Some("2025-06-15".into()),
        newborn: Some("いいえ".into()),
        card: Some("registered".into()),
        certificate_expired: Some("no".into()),
        viewing_blocked: Some("no".into()),
        late_elderly: Some("no".into()),
        difficult: Some("no".into()),
        lost: Some("no".into()),
        ..Default::default()
    };
    let (r, out) = rules(RulesCommand::Kakuninsho(args.clone()), "", false);
    assert_eq!(r.unwrap(), 1);
    assert!(
        out.contains("有効なマイナ保険証をお持ちのため資格確認書は交付されず")
            && out.contains("お知らせ")
            && out.contains("根拠: 資格確認書の交付")
            && !out.contains("R29"),
        "{out}"
    );

    // Missing facts non-interactive: names the flag.
    let (r, _) = rules(
        RulesCommand::Kakuninsho(KakuninshoArgs::default()),
        "",
        false,
    );
    let msg = r.unwrap_err().message_ja();
    assert!(msg.contains("--newborn"), "{msg}");

    // Interactive: one question at a time, a bad answer re-asked.
    let (r, out) = rules(
        RulesCommand::Kakuninsho(KakuninshoArgs::default()),
        "いいえ\n5\n1\n",
        true,
    );
    assert_eq!(r.unwrap(), 0, "{out}");
    assert!(
        out.contains("新生児")
            && out.contains("「5」が分かりません")
            && out.contains("マイナンバーカードを持っていないため")
            && !out.contains("R22"),
        "{out}"
    );
    // The flow stopped at R22: no later question asked.
    assert!(!out.contains("DV"), "{out}");

    // End of input mid-flow is a missing answer, not a panic.
    let (r, _) = rules(
        RulesCommand::Kakuninsho(KakuninshoArgs::default()),
        "いいえ\n",
        true,
    );
    assert!(matches!(r, Err(CliError::MissingAnswer { .. })));

    // 後期高齢者 before and after 2026-08-01.
    let late = |date: &str, birth: &str| KakuninshoArgs {
        date: Some(date.into()),
        late_elderly: Some("yes".into()),
        birth: Some(birth.into()),
        ..args.clone()
    };
    let (r, out) = rules(
        RulesCommand::Kakuninsho(late("2026-07-31", "1950-01-01")),
        "",
        false,
    );
    assert_eq!(r.unwrap(), 0);
    assert!(
        out.contains("申請によらず") && out.contains("後期高齢者は2026年7月31日までの暫定運用"),
        "{out}"
    );
    let (r, out) = rules(
        RulesCommand::Kakuninsho(late("2026-08-01", "1950-01-01")),
        "",
        false,
    );
    assert_eq!(r.unwrap(), 0);
    assert!(
        out.contains("申請により") && out.contains("84歳以下の後期高齢者"),
        "{out}"
    );
}

#[test]
fn exemption_command() {
    let args = ExemptionArgs {
        facility: Some("judo".into()),
        practitioners: vec!["1950-01-01".into(), "1953-12-31".into()],
        closure: None,
        end_juryo_inin: None,
    };
    let (r, out) = rules(RulesCommand::Exemption(args), "", false);
    assert_eq!(r.unwrap(), 0);
    assert!(
        out.contains("免除されます")
            && out.contains("やむを得ない事由1")
            && out.contains("根拠: 柔整・あはき施術所のやむを得ない事由")
            && !out.contains("R33"),
        "{out}"
    );

    // Interactive: asks the practitioners, then closure, then 受領委任.
    let (r, out) = rules(
        RulesCommand::Exemption(ExemptionArgs::default()),
        "ahaki\n1980-01-01,1990-02-02:視覚\n未定\n\n",
        true,
    );
    assert_eq!(r.unwrap(), 1, "{out}");
    assert!(
        out.contains("具体的な日付が決まっていない") && out.contains("免除されません"),
        "{out}"
    );

    let (r, out) = rules(
        RulesCommand::Exemption(ExemptionArgs {
            facility: Some("ahaki".into()),
            practitioners: vec!["1980-01-01".into()],
            closure: Some("none".into()),
            end_juryo_inin: Some("2025-12-02".into()),
        }),
        "",
        false,
    );
    assert_eq!(r.unwrap(), 0, "{out}");
}

fn usage(counts: &Path, png: Option<&Path>, prefecture: &str, month: &str) -> ReportCommand {
    ReportCommand::Usage(UsageArgs {
        month: Some(month.into()),
        counts: Some(counts.to_path_buf()),
        data_dir: None,
        prefecture: prefecture.into(),
        facility: "medical".into(),
        hospital: false,
        png: png.map(Path::to_path_buf),
        font: tsunagi::report::chart::DEFAULT_FONT.into(),
    })
}

#[test]
fn usage_report_table_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let counts = dir.path().join("counts.csv");
    std::fs::write(
        &counts,
        "month,card,total\n2024-10,250,1000\n2024-11,300,1000\n",
    )
    .unwrap();
    let png = dir.path().join("usage.png");
    let mut out = Vec::new();
    let code = run_report(
        &usage(&counts, Some(&png), "東京都", "2024-10"),
        today(),
        &mut out,
    );
    let out = String::from_utf8(out).unwrap();
    if !Path::new(tsunagi::report::chart::DEFAULT_FONT).exists() {
        // Without the font the PNG is refused with the install hint; the table still printed.
        let msg = code.unwrap_err().message_ja();
        assert!(msg.contains("fonts-ipafont-gothic"), "{msg}");
        return;
    }
    assert_eq!(code.unwrap(), 0, "{out}");
    assert!(
        out.contains("25.00%") && out.contains("14.01%") && out.contains("15.67%"),
        "{out}"
    );
    assert!(
        out.contains("東京都・医科診療所") && out.contains("39位(38)"),
        "{out}"
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 10_000, "PNG too small: {}", bytes.len());
    // IHDR width and height.
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((w, h), (1400, 1000));
}

#[test]
fn usage_report_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let counts = dir.path().join("counts.csv");
    std::fs::write(&counts, "2024-10,250,1000\n").unwrap();
    let cases = [
        (
            usage(&counts, None, "東京府", "2024-10"),
            "都道府県「東京府」は存在しません",
        ),
        (usage(&counts, None, "東京都", "2024-13"), "年月「2024-13」"),
        (
            usage(&counts, None, "東京都", "2024-09"),
            "2024年9月の行がありません",
        ),
        (
            usage(&dir.path().join("nope.csv"), None, "東京都", "2024-10"),
            "件数ファイル",
        ),
    ];
    for (cmd, want) in cases {
        let mut out = Vec::new();
        let msg = run_report(&cmd, today(), &mut out)
            .unwrap_err()
            .message_ja();
        assert!(msg.contains(want), "want {want:?} in {msg:?}");
    }
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "2024-10,abc,1000\n").unwrap();
    let mut out = Vec::new();
    let msg = run_report(&usage(&bad, None, "東京都", "2024-10"), today(), &mut out)
        .unwrap_err()
        .message_ja();
    assert!(msg.contains("1行目") && msg.contains("abc"), "{msg}");
}
