//! `tsunagi demo`, as a newcomer runs it: no reader, no pcscd; every part of the tour shows.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[test]
fn the_tour_shows_every_outcome_and_the_offline_part() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .arg("demo")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "資格確認結果: 有効",
        "資格確認結果: 資格（無効）",
        "資格確認結果: 資格情報なし",
        "暗証番号が違います。残り2回です",
        "暗証番号による本人確認が必要です",
        "オフライン受付",
        "現在の資格で通常どおり請求します",
        "資格不詳として請求します",
        // Two devices: a tablet with no signal, then the reception PC.
        "タブレットに2件を記録しました",
        "受付PCにタブレットの2件が届きました",
        "受付PCで事後確認: 2件の請求根拠が決まりました",
        "タブレットにも結果が届きました",
        "接続中",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // The PIN typed by the script never appears.
    assert!(!text.contains("1234"));
}
