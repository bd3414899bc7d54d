//! The tray end to end, over a real D-Bus session bus (issue 13): the real `tsunagi-tray` and
//! `tsunagid` binaries, the simulator of the qualification system, a private `dbus-daemon`,
//! and, on the test's side of the bus, what a desktop provides — a StatusNotifierWatcher and a
//! notification server. The test reads the item's status, tooltip and menu as a tray host does
//! while the line goes offline and online and the daemon stops and starts again.
//!
//! Waits poll with deadlines (see `support::eventually`); nothing is asserted on a fixed sleep.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use oqs_sim::{FaultMode, Simulator};
use serde_json::{json, Value};
use support::{
    eventually, free_port, scenario, today, Bus, Clinic, Host, ItemView, Notifications, Tray,
    Tsunagid, Watcher, WAIT,
};

const OPEN_PAGE: &str = "受付画面を開く";
const SHOW_STATUS: &str = "状態を表示";
const RECONCILE: &str = "今すぐ事後確認";
const QUIT: &str = "終了";

/// Waits until the item, read as a host reads it, satisfies `ok`.
async fn wait_item(
    host: &Host,
    tray: &Tray,
    what: &str,
    ok: impl Fn(&ItemView) -> bool,
) -> ItemView {
    eventually(what, WAIT, async || match host.item().await {
        Ok(v) if ok(&v) => Ok(v),
        Ok(v) => Err(format!("{v:#?}\ntray log:\n{}", tail(&tray.log_text()))),
        Err(e) => Err(format!("{e}\ntray log:\n{}", tail(&tray.log_text()))),
    })
    .await
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Records a 資格確認書 shown at the desk: a check waiting for 事後確認.
async fn record_document(clinic: &Clinic, n: u32) {
    let answer = reqwest::Client::new()
        .post(format!("http://{}/v1/documents", clinic.addr))
        .bearer_auth(clinic.token())
        .json(&json!({
            "kind": "kakuninsho",
            "visit_date": today(),
            "expires": today().checked_add_months(chrono::Months::new(6)).unwrap(),
            "insurer": "06139999", "symbol": "練馬12", "number": format!("{:07}", 9100 + n),
            "birth_date": "1980-04-01",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["status"], "recorded", "{body}");
}

async fn daemon_status(clinic: &Clinic) -> Value {
    reqwest::Client::new()
        .get(format!("http://{}/v1/status", clinic.addr))
        .bearer_auth(clinic.token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A tray host sees the item register, shows the line online, offline and online again with
/// the queue in the tooltip; the menu reconciles, shows the status and opens the reception
/// page; the tray shows tsunagid gone while it is stopped and finds the new one by itself;
/// 終了 ends it and takes the item off the bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tray_host_follows_the_line_the_queue_and_a_daemon_restart() {
    let sim = Simulator::start(scenario().sim_config()).await.unwrap();
    let clinic = Clinic::new(&sim.base_url());
    let bus = Bus::start();
    let (watcher, _watcher_conn) = Watcher::start(&bus).await;
    let (notes, _notes_conn) = Notifications::start(&bus).await;
    let mut daemon = Tsunagid::start(&clinic).await;
    let mut tray = Tray::start(&bus, &clinic, true);
    let host = Host::new(bus.connect().await, tray.service());

    // The item registers with the host's watcher.
    let service = tray.service();
    eventually("the item registered with the watcher", WAIT, async || {
        let items = watcher.items();
        if items.contains(&service) {
            Ok(())
        } else {
            Err(format!("{items:?}"))
        }
    })
    .await;

    // Online, nothing waiting.
    let v = wait_item(&host, &tray, "online", |v| v.icon_name == "network-idle").await;
    assert_eq!(v.status, "Active", "{v:#?}");
    assert_eq!(v.title, "Tsunagi 資格確認");
    assert_eq!(v.tooltip_title, "オンライン — 事後確認待ち 0件");
    assert_eq!(v.pixmap_sizes, [16, 24, 32]);
    let menu = host.menu().await.unwrap();
    let labels: Vec<&str> = menu.iter().map(|e| e.label.as_str()).collect();
    assert_eq!(labels, [OPEN_PAGE, SHOW_STATUS, RECONCILE, QUIT]);
    assert!(menu.iter().all(|e| e.enabled), "{menu:?}");

    // The qualification system goes away: offline.
    sim.faults().set_mode(FaultMode::Refuse);
    let v = wait_item(&host, &tray, "offline", |v| {
        v.icon_name == "network-offline"
    })
    .await;
    assert_eq!(v.status, "NeedsAttention", "{v:#?}");
    assert!(
        v.tooltip_title.starts_with("オフライン — 事後確認待ち"),
        "{v:#?}"
    );
    assert!(v.tooltip_body.contains("通常の負担割合"), "{v:#?}");

    // Two patients show a 資格確認書 meanwhile; 今すぐ事後確認 cannot ask the system but
    // counts them, and says so.
    record_document(&clinic, 1).await;
    record_document(&clinic, 2).await;
    let before = notes.shown().len();
    host.click(RECONCILE).await.unwrap();
    let n = notes.wait_for(before, "事後確認を行えませんでした").await;
    assert!(n.body.contains("つながらない"), "{n:?}");
    let v = wait_item(&host, &tray, "two checks queued", |v| {
        v.tooltip_title == "オフライン — 事後確認待ち 2件"
    })
    .await;
    assert_eq!(v.icon_name, "network-offline");

    // Back online.
    sim.faults().set_mode(FaultMode::None);
    let v = wait_item(&host, &tray, "online again", |v| {
        v.icon_name == "network-idle"
    })
    .await;
    assert_eq!(v.status, "Active", "{v:#?}");
    assert!(
        v.tooltip_title.starts_with("オンライン — 事後確認待ち"),
        "{v:#?}"
    );

    // 今すぐ事後確認 now asks about both; the daemon's own status shows the pass.
    let before = notes.shown().len();
    host.click(RECONCILE).await.unwrap();
    let n = notes.wait_for(before, "事後確認を行いました").await;
    assert!(n.body.contains("対象 2件"), "{n:?}");
    let status = daemon_status(&clinic).await;
    assert_eq!(status["last_pass"]["examined"], 2, "{status}");

    // 状態を表示 and 受付画面を開く.
    let before = notes.shown().len();
    host.click(SHOW_STATUS).await.unwrap();
    let n = notes.wait_for(before, "オンライン — 事後確認待ち").await;
    assert_eq!(n.app_name, "Tsunagi");
    host.click(OPEN_PAGE).await.unwrap();
    // The page's sign-in address with a one-time code: the browser is signed in without the
    // token ever leaving the tray.
    let signin = format!("http://{}/page/signin?code=", clinic.addr);
    eventually("xdg-open given the reception page", WAIT, async || {
        let opened = std::fs::read_to_string(&tray.opened).unwrap_or_default();
        let ok = opened.lines().any(|l| {
            l.strip_prefix(&signin)
                .is_some_and(|code| code.len() == 64 && code.bytes().all(|b| b.is_ascii_hexdigit()))
        });
        if ok {
            Ok(())
        } else {
            Err(opened)
        }
    })
    .await;
    let opened = std::fs::read_to_string(&tray.opened).unwrap_or_default();
    assert!(
        !opened.contains(clinic.token().trim()),
        "the token never reaches the browser"
    );

    // tsunagid stops: not reachable, and the actions that need it are disabled.
    assert!(daemon.stop().await.success(), "{}", daemon.log_text());
    let v = wait_item(&host, &tray, "not reachable", |v| {
        v.icon_name == "dialog-error"
    })
    .await;
    assert_eq!(v.tooltip_title, "tsunagid に接続できません", "{v:#?}");
    assert_eq!(v.status, "NeedsAttention");
    let menu = host.menu().await.unwrap();
    for e in &menu {
        let needs_daemon = e.label == RECONCILE || e.label == OPEN_PAGE;
        assert_eq!(e.enabled, !needs_daemon, "{menu:?}");
    }

    // A new tsunagid on the same data directory: the tray finds it by itself.
    let _daemon = Tsunagid::start(&clinic).await;
    let v = wait_item(&host, &tray, "reconnected", |v| {
        v.icon_name == "network-idle"
    })
    .await;
    assert!(
        v.tooltip_title.starts_with("オンライン — 事後確認待ち"),
        "{v:#?}"
    );
    assert!(host.menu().await.unwrap().iter().all(|e| e.enabled));

    // 終了: the process ends on its own and its item leaves the bus. (The tray waits a moment
    // so the click is answered; on a loaded machine the answer may still lose the race with
    // the exit, which a host takes as "no reply" and nothing more.)
    if let Err(e) = host.click(QUIT).await {
        assert!(e.contains("NoReply"), "{e}");
    }
    let status = tray.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    eventually("the item gone from the bus", WAIT, async || {
        if host.present().await {
            Err("still there".to_string())
        } else {
            Ok(())
        }
    })
    .await;
    sim.shutdown().await;
}

/// Where the desktop has no tray host, the changes that matter come as notifications in
/// Japanese; when a host appears later, the item registers with it by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_tray_host_changes_come_as_notifications() {
    let sim = Simulator::start(scenario().sim_config()).await.unwrap();
    let clinic = Clinic::new(&sim.base_url());
    let bus = Bus::start();
    let (notes, _notes_conn) = Notifications::start(&bus).await;
    let mut daemon = Tsunagid::start(&clinic).await;
    let tray = Tray::start(&bus, &clinic, false);
    let host = Host::new(bus.connect().await, tray.service());

    let n = notes.wait_for(0, "tsunagid に接続しました").await;
    assert!(n.summary.contains("オンライン — 事後確認待ち 0件"), "{n:?}");

    // Offline: an urgent notification saying what to do at the desk.
    let before = notes.shown().len();
    sim.faults().set_mode(FaultMode::Refuse);
    let n = notes.wait_for(before, "オフラインになりました").await;
    assert!(n.body.contains("通常の負担割合で受け付け"), "{n:?}");
    assert_eq!(n.urgency, Some(2), "{n:?}");
    assert_eq!(n.icon, "network-offline");
    assert_eq!(n.app_name, "Tsunagi");

    // Back online.
    let before = notes.shown().len();
    sim.faults().set_mode(FaultMode::None);
    let n = notes
        .wait_for(before, "資格確認システムにつながりました")
        .await;
    assert_eq!(n.urgency, Some(1), "{n:?}");

    // The menu still answers (through a host that reads the bus directly): with no xdg-open
    // installed, opening the reception page says so and gives the address.
    let before = notes.shown().len();
    host.click(OPEN_PAGE).await.unwrap();
    let n = notes.wait_for(before, "xdg-open が見つかりません").await;
    assert!(
        n.body
            .contains(&format!("http://{}/page/signin?code=", clinic.addr)),
        "{n:?}"
    );

    // tsunagid stops: said once.
    let before = notes.shown().len();
    assert!(daemon.stop().await.success());
    let n = notes.wait_for(before, "tsunagid に接続できません").await;
    assert!(n.body.contains("自動で再接続します"), "{n:?}");

    // A tray host starts after the tray (a desktop still logging in): the item registers.
    let (watcher, _watcher_conn) = Watcher::start(&bus).await;
    let service = tray.service();
    eventually(
        "the item registered with the late watcher",
        WAIT,
        async || {
            let items = watcher.items();
            if items.contains(&service) {
                Ok(())
            } else {
                Err(format!("{items:?}\n{}", tail(&tray.log_text())))
            }
        },
    )
    .await;
    let v = wait_item(&host, &tray, "not reachable", |v| {
        v.icon_name == "dialog-error"
    })
    .await;
    assert_eq!(v.tooltip_title, "tsunagid に接続できません");
    sim.shutdown().await;
}

/// The token is read from its file: it is in neither the tray's command line nor its
/// environment, which other users of the machine can read in /proc, nor in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_in_no_command_line_environment_or_log() {
    // No simulator: the daemon answers whatever the line.
    let clinic = Clinic::new(&format!("http://127.0.0.1:{}", free_port()));
    let bus = Bus::start();
    let _daemon = Tsunagid::start(&clinic).await;
    let mut tray = Tray::start(&bus, &clinic, false);
    eventually("the tray proved tsunagid and connected", WAIT, async || {
        let log = tray.log_text();
        if log.contains("connected to tsunagid") {
            Ok(())
        } else {
            Err(tail(&log))
        }
    })
    .await;
    let token = clinic.token();
    assert_eq!(token.len(), 64);
    let has =
        |bytes: &[u8], needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", tray.pid())).unwrap();
    let environ = std::fs::read(format!("/proc/{}/environ", tray.pid())).unwrap();
    assert!(
        has(&cmdline, "--config"),
        "{}",
        String::from_utf8_lossy(&cmdline)
    );
    assert!(has(&environ, "DBUS_SESSION_BUS_ADDRESS="));
    assert!(!has(&cmdline, &token), "the token is on the command line");
    assert!(!has(&environ, &token), "the token is in the environment");
    assert!(!tray.log_text().contains(&token), "the token is in the log");
    // SIGTERM: an orderly exit.
    let status = tray.stop().await;
    assert!(status.success(), "{status}");
    assert!(
        tray.log_text().contains("tray stopped"),
        "{}",
        tail(&tray.log_text())
    );
}

/// While tsunagid is down another program listens on its port. Whatever it answers to the
/// identity challenge — a wrong proof, an error, garbage, a proof made with another key — it
/// never receives the token, nor any request but the challenge; the tray says the program is
/// not tsunagid and keeps trying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_squatting_on_the_port_never_receives_the_token() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let clinic = Clinic::new(&format!("http://127.0.0.1:{}", free_port()));
    // The token tsunagid made on an earlier start; tsunagid is not running now.
    let token = "5a".repeat(32);
    std::fs::create_dir_all(clinic.token_file.parent().unwrap()).unwrap();
    std::fs::write(&clinic.token_file, &token).unwrap();

    let listener = tokio::net::TcpListener::bind(clinic.addr).await.unwrap();
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let squatter = tokio::spawn({
        let heard = heard.clone();
        async move {
            for n in 0u32.. {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the request head (and anything sent right after it).
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await
                    {
                        Ok(Ok(k)) if k > 0 => got.extend_from_slice(&buf[..k]),
                        _ => break,
                    }
                }
                heard.lock().unwrap().extend_from_slice(&got);
                let (status, body) = match n % 4 {
                    0 => (
                        "200 OK",
                        format!(r#"{{"service":"tsunagid","proof":"{}"}}"#, "00".repeat(32)),
                    ),
                    1 => ("404 Not Found", r#"{"detail":"no"}"#.to_string()),
                    2 => ("200 OK", "<html>hello</html>".to_string()),
                    // A well-formed HMAC, but keyed by something else than the token.
                    _ => (
                        "200 OK",
                        format!(r#"{{"service":"tsunagid","proof":"{}"}}"#, "ab".repeat(32)),
                    ),
                };
                let _ = stream
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
                // Listen a little longer: a client that believed it would send more now.
                let mut more = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_millis(300), stream.read_to_end(&mut more))
                        .await;
                heard.lock().unwrap().extend_from_slice(&more);
            }
        }
    });

    let bus = Bus::start();
    let (watcher, _watcher_conn) = Watcher::start(&bus).await;
    let tray = Tray::start(&bus, &clinic, false);
    let host = Host::new(bus.connect().await, tray.service());
    let service = tray.service();
    eventually("the item registered", WAIT, async || {
        if watcher.items().contains(&service) {
            Ok(())
        } else {
            Err(format!("{:?}", watcher.items()))
        }
    })
    .await;
    // Every kind of answer, the first one twice: five challenges (the retries back off from
    // 0.5 s, so this takes about 8 s).
    eventually(
        "five identity challenges",
        Duration::from_secs(30),
        async || {
            let text = String::from_utf8_lossy(&heard.lock().unwrap()).to_string();
            let asked = text.matches("GET /v1/identity?nonce=").count();
            if asked >= 5 {
                Ok(())
            } else {
                Err(format!("{asked} so far"))
            }
        },
    )
    .await;
    let v = wait_item(&host, &tray, "not tsunagid", |v| {
        v.icon_name == "dialog-error" && v.tooltip_body.contains("tsunagid ではありません")
    })
    .await;
    assert!(
        v.tooltip_body.contains("トークンは送っていません"),
        "{v:#?}"
    );

    squatter.abort();
    let text = String::from_utf8_lossy(&heard.lock().unwrap()).to_string();
    assert!(!text.contains(&token), "the token was sent:\n{text}");
    assert!(
        !text.to_ascii_lowercase().contains("authorization"),
        "{text}"
    );
    // Only challenges, each with a fresh 32-byte nonce.
    let mut nonces = std::collections::HashSet::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("GET ") || l.starts_with("POST "))
    {
        let nonce = line
            .strip_prefix("GET /v1/identity?nonce=")
            .and_then(|rest| rest.strip_suffix(" HTTP/1.1"))
            .unwrap_or_else(|| panic!("a request other than the challenge: {line}"));
        assert_eq!(nonce.len(), 64, "{line}");
        assert!(nonce.bytes().all(|b| b.is_ascii_hexdigit()), "{line}");
        assert!(
            nonces.insert(nonce.to_string()),
            "a nonce used twice: {line}"
        );
    }
}
