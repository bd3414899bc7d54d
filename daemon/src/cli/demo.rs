//! `tsunagi demo`: a scripted tour for newcomers, with the simulator and virtual cards
//! in-process (no reader, no pcscd). It runs the same check code as `tsunagi check`; only the
//! transport (a virtual card instead of pcscd) and the PIN source (a script) differ.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oqs_sim::scenario::{self, Scenario};
use oqs_sim::Simulator;
use tsunagi_vcard::card::VirtualCard;

use crate::card::{CardError, Pin, PinEntry, Transport};
use crate::check::capture::VisitContext;
use crate::check::now_jst;
use crate::check::workflow::{self, CheckRequest, Reception};
use crate::domain::IdentityMethod;
use crate::oqs::{OqsClient, OqsConfig};

use super::check::{io_error, CommandError};
use super::render;
use super::DemoArgs;

/// A virtual card used directly, as if it sat on a reader.
#[derive(Debug)]
pub struct VirtualTransport(pub VirtualCard);

impl Transport for VirtualTransport {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardError> {
        Ok(self.0.transmit(command))
    }
}

/// PINs typed by the script instead of a patient; what the operator would see is collected.
#[derive(Debug, Clone, Default)]
pub struct ScriptedPins {
    pins: Arc<Mutex<VecDeque<String>>>,
    /// Messages the operator would have seen during PIN entry.
    pub shown: Arc<Mutex<Vec<String>>>,
}

impl ScriptedPins {
    /// The patient will type these PINs, in order.
    pub fn new(pins: &[&str]) -> Self {
        Self {
            pins: Arc::new(Mutex::new(pins.iter().map(|p| p.to_string()).collect())),
            shown: Arc::default(),
        }
    }

    fn show(&self, message: String) {
        if let Ok(mut shown) = self.shown.lock() {
            shown.push(message);
        }
    }
}

impl PinEntry for ScriptedPins {
    fn pin(&mut self, tries_left: u8) -> Option<Pin> {
        let next = self.pins.lock().ok()?.pop_front()?;
        self.show(format!("（患者さんが暗証番号を入力：残り{tries_left}回）"));
        Pin::parse(&next)
    }

    fn confirm_last_try(&mut self) -> bool {
        self.show("残り1回のため入力を見送りました。".into());
        false
    }

    fn wrong_pin(&mut self, tries_left: u8) {
        self.show(CardError::WrongPin { tries_left }.message_ja());
    }
}

struct Step {
    title: &'static str,
    card: &'static str,
    method: IdentityMethod,
    pins: &'static [&'static str],
}

const TOUR: &[Step] = &[
    Step {
        title: "有効な資格（目視で本人確認）",
        card: "valid-employee",
        method: IdentityMethod::Visual,
        pins: &[],
    },
    Step {
        title: "有効な資格（暗証番号で本人確認、カードが署名）",
        card: "valid-dependant",
        method: IdentityMethod::Pin,
        pins: &["1234"],
    },
    Step {
        title: "資格（無効）：退職などで資格を喪失している",
        card: "lost",
        method: IdentityMethod::Visual,
        pins: &[],
    },
    Step {
        title: "資格情報なし：新しい保険の登録がまだ",
        card: "no-coverage",
        method: IdentityMethod::Visual,
        pins: &[],
    },
    Step {
        title: "暗証番号の入力間違い（1回間違えてから正しく入力）",
        card: "kouki",
        method: IdentityMethod::Pin,
        pins: &["0000", "1234"],
    },
    Step {
        title: "顔写真のない乳幼児のカードを目視で確認しようとした",
        card: "infant",
        method: IdentityMethod::Visual,
        pins: &[],
    },
];

/// Runs the tour. Returns the exit code.
pub async fn run(args: &DemoArgs, out: &mut dyn Write) -> Result<i32, CommandError> {
    writeln!(
        out,
        "つなぎ デモ：模擬の資格確認システムと仮想マイナンバーカードで、受付での確認を体験します。"
    )
    .map_err(io_error)?;
    writeln!(
        out,
        "（実在の人物・番号ではありません。カードリーダーは不要です）\n"
    )
    .map_err(io_error)?;
    let today = now_jst().date_naive();
    let scenario: Scenario = scenario::standard(today).map_err(|e| CommandError {
        message: format!("デモの準備に失敗しました: {e}"),
    })?;
    let sim = Simulator::start(scenario.sim_config())
        .await
        .map_err(|e| CommandError {
            message: format!("模擬の資格確認システムを起動できません: {e}"),
        })?;
    let client = OqsClient::new(OqsConfig {
        base_url: sim.base_url(),
        institution_code: scenario.institution_code.clone(),
        timeout: Duration::from_secs(3),
    })
    .map_err(|e| CommandError {
        message: e.message_ja(),
    })?;
    for (n, step) in TOUR.iter().enumerate() {
        writeln!(out, "━━ {}. {} ━━", n + 1, step.title).map_err(io_error)?;
        let Some(profile) = scenario.card(step.card) else {
            return Err(CommandError {
                message: format!("デモ用カード {} がありません", step.card),
            });
        };
        let mut card = VirtualCard::new(profile.clone());
        card.power_on();
        let pins = ScriptedPins::new(step.pins);
        writeln!(out, "本人確認の方法: {}", step.method.label_ja()).map_err(io_error)?;
        let request = CheckRequest {
            method: step.method,
            visit: VisitContext {
                visit_date: today,
                facility: crate::domain::FacilityType::Medical,
                first_visit: false,
                next_visit: None,
                last_known: None,
            },
            check_id: None,
        };
        let report = workflow::perform(
            Reception {
                ledger: None,
                client: Some(&client),
                institution_code: &scenario.institution_code,
                settings: &crate::rules::settings::RuleSettings::default(),
            },
            VirtualTransport(card),
            &request,
            Box::new(pins.clone()),
            now_jst(),
        )
        .await
        .map_err(|e| CommandError {
            message: e.message_ja(),
        })?;
        if let Ok(shown) = pins.shown.lock() {
            for line in shown.iter() {
                writeln!(out, "{line}").map_err(io_error)?;
            }
        }
        render::report_text(&report, out).map_err(io_error)?;
        writeln!(out).map_err(io_error)?;
        if args.pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
        }
    }
    offline_part(&scenario, &sim, &client, today, out).await?;
    sync_part(&scenario, &client, today, out).await?;
    writeln!(
        out,
        "デモは以上です。実機では `tsunagi check --method visual|pin` で同じ確認を行います。"
    )
    .map_err(io_error)?;
    sim.shutdown().await;
    Ok(0)
}

/// One visual check of demo card `card` on `visit`, recorded in `ledger`.
async fn demo_check(
    scenario: &Scenario,
    client: &OqsClient,
    ledger: &crate::ledger::Ledger,
    card: &str,
    visit: chrono::NaiveDate,
    first_visit: bool,
) -> Result<crate::view::CheckReport, CommandError> {
    let Some(profile) = scenario.card(card) else {
        return Err(CommandError::new(format!(
            "デモ用カード {card} がありません"
        )));
    };
    let mut virtual_card = VirtualCard::new(profile.clone());
    virtual_card.power_on();
    let request = CheckRequest {
        method: IdentityMethod::Visual,
        visit: VisitContext {
            visit_date: visit,
            facility: crate::domain::FacilityType::Medical,
            first_visit,
            next_visit: None,
            last_known: None,
        },
        check_id: None,
    };
    workflow::perform(
        Reception {
            ledger: Some(ledger),
            client: Some(client),
            institution_code: &scenario.institution_code,
            settings: &crate::rules::settings::RuleSettings::default(),
        },
        VirtualTransport(virtual_card),
        &request,
        Box::new(ScriptedPins::new(&[])),
        now_jst(),
    )
    .await
    .map_err(|e| CommandError::new(e.message_ja()))
}

/// A patient is seen while the line is up; the line drops: that patient returns and two
/// more come, all captured; it returns: all are reconciled.
async fn offline_part(
    scenario: &Scenario,
    sim: &oqs_sim::SimHandle,
    client: &OqsClient,
    today: chrono::NaiveDate,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    use crate::ledger::event::CheckEvent;
    use crate::ledger::Ledger;
    use crate::reconcile::{ReconcileConfig, Reconciler};
    use crate::rules::claim::Moushitatesho;

    let dir = tempfile::tempdir()
        .map_err(|e| CommandError::new(format!("一時ディレクトリを作れません: {e}")))?;
    let ledger = Ledger::open(dir.path()).map_err(|e| CommandError::new(e.message_ja()))?;
    // A patient seen last month while the line was up: the clinic's history remembers
    // what was confirmed (here 後期高齢者, 1割).
    writeln!(out, "━━ 前回の来院（回線あり）：後期高齢者の患者さん ━━").map_err(io_error)?;
    let earlier = today
        .checked_sub_months(chrono::Months::new(1))
        .unwrap_or(today);
    let report = demo_check(scenario, client, &ledger, "kouki", earlier, false).await?;
    render::report_text(&report, out).map_err(io_error)?;
    writeln!(out).map_err(io_error)?;
    writeln!(out, "━━ オフライン：回線が切れた ━━").map_err(io_error)?;
    sim.faults().set_mode(oqs_sim::FaultMode::Refuse);
    let mut ids = Vec::new();
    for (card, first_visit, title) in [
        (
            "kouki",
            false,
            "前回の患者さんが再来院（前回確認した1割で受付）",
        ),
        ("valid-employee", false, "再診の患者さん"),
        ("no-coverage", true, "初めての患者さん（申立書を記入）"),
    ] {
        writeln!(out, "── {title} ──").map_err(io_error)?;
        let report = demo_check(scenario, client, &ledger, card, today, first_visit).await?;
        render::report_text(&report, out).map_err(io_error)?;
        let Some(id) = report.check_id.clone() else {
            return Err(CommandError::new("デモの確認が記録されませんでした"));
        };
        if first_visit {
            let m = Moushitatesho {
                name: Some("見本　初子".into()),
                address: Some("架空県架空市本町1-2-3".into()),
                phone: Some("0120-000-000".into()),
                ..Moushitatesho::default()
            };
            ledger
                .record(&id, today, &CheckEvent::Declared { moushitatesho: m })
                .await
                .map_err(|e| CommandError::new(e.message_ja()))?;
            writeln!(out, "（被保険者資格申立書を記録しました）").map_err(io_error)?;
        }
        writeln!(out).map_err(io_error)?;
        ids.push(id);
    }
    writeln!(out, "━━ 回線が戻った：事後確認 ━━").map_err(io_error)?;
    sim.faults().clear();
    let reconciler = Reconciler::new(ledger.clone(), client.clone(), ReconcileConfig::default());
    let report = reconciler
        .run_pass(now_jst(), true)
        .await
        .map_err(|e| CommandError::new(e.message_ja()))?;
    writeln!(
        out,
        "事後確認: {}件を確認し、{}件の請求根拠が決まりました。",
        report.examined, report.resolved
    )
    .map_err(io_error)?;
    for id in &ids {
        let c = ledger
            .check(id)
            .map_err(|e| CommandError::new(e.message_ja()))?;
        match &crate::view::CheckView::of(&c, today).resolution {
            Some(r) => {
                writeln!(out, "・{id}: {}", r.summary_ja).map_err(io_error)?;
                super::ledger::write_claim_fields(out, r, "    ").map_err(io_error)?;
            }
            None => writeln!(out, "・{id}: まだ決まっていません").map_err(io_error)?,
        }
    }
    writeln!(out).map_err(io_error)?;
    Ok(())
}

/// Two devices of one clinic: a tablet on a home visit with no signal captures two checks;
/// back at the clinic it meets the reception PC, which receives them, confirms them with the
/// qualification system, and sends the results back — over QUIC on this machine's loopback,
/// with the code tsunagid runs.
async fn sync_part(
    scenario: &Scenario,
    client: &OqsClient,
    today: chrono::NaiveDate,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    use crate::ledger::Ledger;
    use crate::peer::book::{self, Peer};
    use crate::peer::{RetentionHost, SyncService};
    use crate::reconcile::{ReconcileConfig, Reconciler};

    let temp = |what: &str| {
        tempfile::tempdir()
            .map_err(|e| CommandError::new(format!("{what}の一時ディレクトリを作れません: {e}")))
    };
    let (pc_dir, tablet_dir) = (temp("受付PC")?, temp("タブレット")?);
    let pc = Ledger::open(pc_dir.path()).map_err(|e| CommandError::new(e.message_ja()))?;
    let tablet = Ledger::open(tablet_dir.path()).map_err(|e| CommandError::new(e.message_ja()))?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let start = |ledger: &Ledger, dir: &std::path::Path| {
        SyncService::start(
            ledger.store().clone(),
            dir,
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            Vec::new(),
            Arc::new(RetentionHost {
                ledger: ledger.clone(),
                extra_months: 0,
            }),
            Arc::new(|| {}),
            stopping.clone(),
        )
        .map_err(|e| CommandError::new(e.message_ja()))
    };
    let pc_sync = start(&pc, pc_dir.path())?;
    let pc_addr = pc_sync
        .local_addr()
        .ok_or_else(|| CommandError::new("受付PCの同期の待ち受けアドレスが分かりません"))?;
    let (pc_id, tablet_id) = (
        pc.store().device().id().clone(),
        tablet.store().device().id().clone(),
    );
    // Paired on both sides, as staff do with `tsunagi peer add`.
    pc_sync
        .add_peer(Peer {
            id: tablet_id.clone(),
            name: Some("訪問用タブレット".into()),
            addr: None,
        })
        .map_err(|e| CommandError::new(e.message_ja()))?;
    book::add(
        tablet_dir.path(),
        &tablet_id,
        Peer {
            id: pc_id,
            name: Some("受付PC".into()),
            addr: Some(pc_addr.to_string()),
        },
    )
    .map_err(|e| CommandError::new(e.message_ja()))?;

    writeln!(out, "━━ 訪問診療：電波の届かないお宅で（タブレット） ━━").map_err(io_error)?;
    // Nothing answers here: the tablet has no signal.
    let no_signal = OqsClient::new(OqsConfig {
        base_url: "http://127.0.0.1:9".into(),
        institution_code: scenario.institution_code.clone(),
        timeout: Duration::from_millis(300),
    })
    .map_err(|e| CommandError::new(e.message_ja()))?;
    let mut ids = Vec::new();
    for card in ["valid-employee", "kouki"] {
        let report = demo_check(scenario, &no_signal, &tablet, card, today, false).await?;
        writeln!(out, "{}", report.message_ja).map_err(io_error)?;
        ids.extend(report.check_id.clone());
    }
    writeln!(
        out,
        "タブレットに{}件を記録しました（受付PCとはつながっていません）。\n",
        ids.len()
    )
    .map_err(io_error)?;

    writeln!(out, "━━ 診療所に戻った：タブレットと受付PCが同期 ━━").map_err(io_error)?;
    let tablet_sync = start(&tablet, tablet_dir.path())?;
    let arrived = wait_for(Duration::from_secs(20), || {
        ids.iter().all(|id| pc.check(id).is_ok())
    })
    .await;
    if !arrived {
        return Err(CommandError::new(
            "タブレットの記録が受付PCに届きませんでした",
        ));
    }
    writeln!(out, "受付PCにタブレットの{}件が届きました。", ids.len()).map_err(io_error)?;
    let reconciler = Reconciler::new(pc.clone(), client.clone(), ReconcileConfig::default());
    let report = reconciler
        .run_pass(now_jst(), true)
        .await
        .map_err(|e| CommandError::new(e.message_ja()))?;
    writeln!(
        out,
        "受付PCで事後確認: {}件の請求根拠が決まりました。",
        report.resolved
    )
    .map_err(io_error)?;
    pc_sync.local_change();
    let resolved = |ledger: &Ledger, id: &str| {
        ledger
            .check(id)
            .ok()
            .and_then(|c| crate::view::CheckView::of(&c, today).resolution)
    };
    let back = wait_for(Duration::from_secs(20), || {
        ids.iter().all(|id| resolved(&tablet, id).is_some())
    })
    .await;
    if !back {
        return Err(CommandError::new(
            "事後確認の結果がタブレットに戻りませんでした",
        ));
    }
    writeln!(out, "タブレットにも結果が届きました:").map_err(io_error)?;
    for id in &ids {
        if let Some(r) = resolved(&tablet, id) {
            writeln!(out, "・{id}: {}", r.summary_ja).map_err(io_error)?;
        }
    }
    for line in super::peer::status_lines_ja(&tablet_sync.status()) {
        writeln!(out, "{line}").map_err(io_error)?;
    }
    writeln!(out).map_err(io_error)?;
    let _ = stop.send(true);
    tablet_sync.stop().await;
    pc_sync.stop().await;
    Ok(())
}

/// Polls `done` every 50 ms until it holds or `max` passes.
async fn wait_for(max: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + max;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
