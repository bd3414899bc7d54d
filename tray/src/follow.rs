//! Following tsunagid (デーモンの追跡): connect, read the status, listen to the event stream,
//! reconnect when it goes away, and carry out the menu's commands. The one task that owns the
//! tray item's handle, the notifier and every task the menu starts.
//!
//! # The loop
//!
//! - **Disconnected**: at each retry time, read the configuration and the token again, open
//!   two proven connections (one becomes the event stream, opened first so no change falls
//!   between it and the status read), read the status. A failure shows "tsunagid に接続できま
//!   せん" with its reason, and the next try waits 0.5 s, 1 s, 2 s, 4 s, then 5 s each time.
//! - **Connected**: every event schedules one status read [`COALESCE`] later, so a burst of
//!   captures costs one read; the status is also read every `--refresh-secs` (the queue and
//!   overdue counts change with the daemon's own passes and the date, which send no event).
//!   The stream ending (the daemon stops), breaking, or falling silent for [`SILENCE`]
//!   (three missed keep-alives) means disconnected.
//!
//! # Shutdown
//!
//! SIGTERM, SIGINT and 終了 cancel the root token (終了 after [`QUIT_GRACE`]): the loop stops,
//! tasks the menu started are aborted (a reconcile pass goes on in the daemon, which owns it),
//! the item is removed from the bus, and the process exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{Daemon, Events, ReconcileReport, Session};
use crate::item::{Command, Item};
use crate::notify::{Channel, Notifier};
use crate::sse;
use crate::view::{self, Indicator, Link, Notice, Problem, Summary};

/// How long after an event the status is read (more events meanwhile share the read).
pub const COALESCE: Duration = Duration::from_millis(200);
/// No byte from the event stream for this long (tsunagid sends a keep-alive every 15 s):
/// the connection is dead.
pub const SILENCE: Duration = Duration::from_secs(45);
/// How long shutdown waits for tasks and the bus.
const SHUTDOWN: Duration = Duration::from_secs(3);
/// After 終了, how long the item stays on the bus so the host gets its answer to the click
/// (ksni answers after the menu callback returns; closing the connection at once would leave
/// the host with "no reply").
const QUIT_GRACE: Duration = Duration::from_millis(200);

/// The follower's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The daemon's configuration file.
    pub config: PathBuf,
    /// How often the status is read while nothing happens.
    pub refresh: Duration,
}

/// The reconnect delay (再接続の間隔): doubling from 0.5 s up to 5 s, reset by a connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const CAP: Duration = Duration::from_secs(5);

    /// A fresh backoff.
    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The delay before the next try.
    pub fn next_delay(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::CAP);
        now
    }

    /// A connection worked: start again from the shortest delay.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// What tasks started from the menu report back.
#[derive(Debug)]
enum Done {
    Reconciled(Result<ReconcileReport, String>),
    PageOpened(Result<(), Notice>),
}

/// Shows the link: on the item when there is a tray host, as notifications when there is
/// none.
struct Presenter {
    handle: Option<ksni::Handle<Item>>,
    notifier: Notifier,
    tray_host: bool,
    shown: Link,
}

impl Presenter {
    async fn show(&mut self, link: Link) {
        if link == self.shown {
            return;
        }
        if self.shown.indicator() != link.indicator() {
            tracing::info!(
                from = self.shown.indicator().name(),
                to = link.indicator().name(),
                "state changed"
            );
        }
        let before = std::mem::replace(&mut self.shown, link.clone());
        if let Some(h) = &self.handle {
            h.update(move |item| item.link = link).await;
        }
        if !self.tray_host {
            if let Some(n) = view::notice(&before, &self.shown) {
                self.notifier.send(Channel::State, &n).await;
            }
        }
    }

    async fn set_reconciling(&mut self, on: bool) {
        if let Some(h) = &self.handle {
            h.update(move |item| item.reconciling = on).await;
        }
    }

    async fn set_tray_host(&mut self, present: bool) {
        let was = std::mem::replace(&mut self.tray_host, present);
        // At start (still connecting) the first state shown will be announced anyway.
        if was && !present && self.shown != Link::Connecting {
            // From now on changes come as notifications: start with where things stand.
            let mut n = Notice::status(&self.shown);
            n.body
                .push_str("\nトレイが表示できないため、状態の変化は通知でお知らせします。");
            self.notifier.send(Channel::State, &n).await;
        }
    }

    async fn tell(&mut self, notice: &Notice) {
        self.notifier.send(Channel::Action, notice).await;
    }
}

/// A connected daemon.
struct Following {
    daemon: Daemon,
    requests: Session,
    events: Events,
    summary: Summary,
}

/// Why following stopped.
enum Ended {
    Cancelled,
    Lost(Problem),
}

/// The follower.
pub struct Follower {
    settings: Settings,
    presenter: Presenter,
    commands: UnboundedReceiver<Command>,
    cancel: CancellationToken,
    tasks: JoinSet<Done>,
    backoff: Backoff,
    reconciling: bool,
    /// The address last read from the configuration (for the reception page).
    addr: Option<SocketAddr>,
    /// The last problem logged, so a lasting outage is logged once.
    logged: Option<String>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("settings", &self.settings)
            .field("shown", &self.presenter.shown)
            .finish_non_exhaustive()
    }
}

fn problem(message_ja: String) -> Problem {
    Problem { message_ja }
}

impl Follower {
    /// A follower presenting on `handle` (none: no tray item could be made, notifications
    /// only).
    pub fn new(
        settings: Settings,
        handle: Option<ksni::Handle<Item>>,
        commands: UnboundedReceiver<Command>,
        cancel: CancellationToken,
    ) -> Self {
        let tray_host = handle.is_some();
        Self {
            settings,
            presenter: Presenter {
                handle,
                notifier: Notifier::default(),
                tray_host,
                shown: Link::Connecting,
            },
            commands,
            cancel,
            tasks: JoinSet::new(),
            backoff: Backoff::new(),
            reconciling: false,
            addr: None,
            logged: None,
        }
    }

    /// Runs until cancelled, then shuts down in order.
    pub async fn run(mut self) {
        let mut retry_at = Instant::now();
        loop {
            let Some(following) = self.disconnected(retry_at).await else {
                break;
            };
            match self.connected(following).await {
                Ended::Cancelled => break,
                Ended::Lost(p) => {
                    self.log_problem(&p);
                    self.presenter.show(Link::Unreachable(p)).await;
                    retry_at = Instant::now() + self.backoff.next_delay();
                }
            }
        }
        self.shutdown().await;
    }

    fn log_problem(&mut self, p: &Problem) {
        if self.logged.as_deref() != Some(p.message_ja.as_str()) {
            tracing::warn!(reason = %p.message_ja, "tsunagid not reachable; retrying");
            self.logged = Some(p.message_ja.clone());
        }
    }

    /// Waits for `retry_at`, tries, and so on until connected (`Some`) or cancelled (`None`),
    /// carrying out commands meanwhile.
    async fn disconnected(&mut self, mut retry_at: Instant) -> Option<Following> {
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return None,
                Some(command) = self.commands.recv() => self.command(command, None).await,
                Some(done) = self.tasks.join_next() => self.done(done).await,
                () = tokio::time::sleep_until(retry_at) => {
                    let cancel = self.cancel.clone();
                    let attempt = tokio::select! {
                        () = cancel.cancelled() => return None,
                        a = self.connect() => a,
                    };
                    match attempt {
                        Ok(f) => {
                            self.backoff.reset();
                            self.logged = None;
                            tracing::info!(addr = %f.daemon.addr(), "connected to tsunagid");
                            self.presenter.show(Link::Connected(f.summary.clone())).await;
                            return Some(f);
                        }
                        Err(p) => {
                            self.log_problem(&p);
                            self.presenter.show(Link::Unreachable(p)).await;
                            retry_at = Instant::now() + self.backoff.next_delay();
                        }
                    }
                }
            }
        }
    }

    /// One connection attempt: configuration, token, the two proven connections, the status.
    async fn connect(&mut self) -> Result<Following, Problem> {
        let config = self.settings.config.clone();
        let read = tokio::task::spawn_blocking(move || {
            let located = crate::locate::locate(&config)?;
            let token = crate::locate::read_token(&located.token_file)?;
            Ok::<_, crate::locate::LocateError>((located, token))
        })
        .await
        .map_err(|e| problem(format!("設定を読み込めませんでした（{e}）。")))?;
        let (located, token) = read.map_err(|e| problem(e.message_ja()))?;
        self.addr = Some(located.addr);
        let daemon = Daemon::new(located.addr, token);
        let connect_error = |e: crate::api::ConnectError| problem(e.message_ja());
        let request_error = |e: crate::api::RequestError| problem(e.message_ja());
        let events = daemon
            .open()
            .await
            .map_err(connect_error)?
            .events()
            .await
            .map_err(request_error)?;
        let mut requests = daemon.open().await.map_err(connect_error)?;
        let summary = requests.status().await.map_err(request_error)?;
        Ok(Following {
            daemon,
            requests,
            events,
            summary,
        })
    }

    /// Follows a connected daemon until the connection is lost or the tray is cancelled.
    async fn connected(&mut self, mut f: Following) -> Ended {
        let refresh = self.settings.refresh;
        let mut next_poll = Instant::now() + refresh;
        let mut refresh_at: Option<Instant> = None;
        let mut heard = Instant::now();
        loop {
            let wake = refresh_at.map_or(next_poll, |r| r.min(next_poll));
            tokio::select! {
                () = self.cancel.cancelled() => return Ended::Cancelled,
                Some(command) = self.commands.recv() => self.command(command, Some(&f)).await,
                Some(done) = self.tasks.join_next() => {
                    // After a pass, read the counts it changed.
                    refresh_at.get_or_insert_with(Instant::now);
                    self.done(done).await;
                }
                item = f.events.next() => match item {
                    Ok(Some(sse::Item::Event { name, .. })) => {
                        tracing::debug!(event = %name, "daemon event");
                        heard = Instant::now();
                        refresh_at.get_or_insert_with(|| Instant::now() + COALESCE);
                    }
                    Ok(Some(sse::Item::Comment)) => heard = Instant::now(),
                    Ok(None) => {
                        tracing::info!("event stream ended: tsunagid stopped");
                        return Ended::Lost(problem(
                            "tsunagid が停止しました（再起動中かもしれません）。".to_string(),
                        ));
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "event stream broke");
                        return Ended::Lost(problem(e.message_ja()));
                    }
                },
                () = tokio::time::sleep_until(heard + SILENCE) => {
                    tracing::warn!("event stream silent; reconnecting");
                    return Ended::Lost(problem("tsunagid が応答しません。".to_string()));
                }
                () = tokio::time::sleep_until(wake) => {
                    refresh_at = None;
                    next_poll = Instant::now() + refresh;
                    if let Err(p) = self.refresh(&mut f).await {
                        return Ended::Lost(p);
                    }
                }
            }
        }
    }

    /// Reads the status again; a broken request connection is opened (and proven) again once.
    async fn refresh(&mut self, f: &mut Following) -> Result<(), Problem> {
        let summary = match f.requests.status().await {
            Ok(s) => s,
            Err(crate::api::RequestError::Refused { code: 429, .. }) => {
                tracing::debug!("status read paced by the daemon; next time");
                return Ok(());
            }
            Err(e) => {
                tracing::debug!(error = %e, "status read failed; opening a new connection");
                f.requests = f.daemon.open().await.map_err(|e| problem(e.message_ja()))?;
                f.requests
                    .status()
                    .await
                    .map_err(|e| problem(e.message_ja()))?
            }
        };
        f.summary = summary;
        self.presenter
            .show(Link::Connected(f.summary.clone()))
            .await;
        Ok(())
    }

    async fn command(&mut self, command: Command, f: Option<&Following>) {
        tracing::debug!(?command, "menu command");
        match command {
            Command::TrayHost(present) => self.presenter.set_tray_host(present).await,
            Command::Quit => {
                tracing::info!("quit from the menu");
                tokio::time::sleep(QUIT_GRACE).await;
                self.cancel.cancel();
            }
            Command::ShowStatus => {
                let n = Notice::status(&self.presenter.shown);
                self.presenter.tell(&n).await;
            }
            Command::Reconcile => match f {
                _ if self.reconciling => {}
                Some(f) => {
                    self.reconciling = true;
                    self.presenter.set_reconciling(true).await;
                    let daemon = f.daemon.clone();
                    self.tasks.spawn(async move {
                        let result = async {
                            let mut s = daemon.open().await.map_err(|e| e.message_ja())?;
                            s.reconcile(true).await.map_err(|e| e.message_ja())
                        }
                        .await;
                        Done::Reconciled(result)
                    });
                }
                None => {
                    let n = Notice {
                        summary: "事後確認を始められません".to_string(),
                        body: format!(
                            "{}。つながり次第、事後確認は自動で行います。",
                            view::UNREACHABLE_JA
                        ),
                        indicator: Indicator::Unreachable,
                    };
                    self.presenter.tell(&n).await;
                }
            },
            Command::OpenPage => {
                let Some(f) = f else {
                    let n = Notice {
                        summary: "受付画面を開けません".to_string(),
                        body: format!("{}。", view::UNREACHABLE_JA),
                        indicator: Indicator::Unreachable,
                    };
                    self.presenter.tell(&n).await;
                    return;
                };
                // A one-time code signs the browser in; the token never leaves the tray.
                let daemon = f.daemon.clone();
                tracing::info!("opening the reception page");
                self.tasks.spawn(async move {
                    let url = async {
                        let mut s = daemon.open().await.map_err(|e| e.message_ja())?;
                        s.page_signin().await.map_err(|e| e.message_ja())
                    }
                    .await;
                    match url {
                        Ok(url) => Done::PageOpened(open_page(&url).await),
                        Err(why) => Done::PageOpened(Err(Notice {
                            summary: "受付画面を開けません".to_string(),
                            body: why,
                            indicator: Indicator::Unreachable,
                        })),
                    }
                });
            }
        }
    }

    async fn done(&mut self, done: Result<Done, tokio::task::JoinError>) {
        let done = match done {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "menu task failed");
                if self.reconciling {
                    self.reconciling = false;
                    self.presenter.set_reconciling(false).await;
                }
                return;
            }
        };
        match done {
            Done::Reconciled(result) => {
                self.reconciling = false;
                self.presenter.set_reconciling(false).await;
                let n = reconcile_notice(&result);
                tracing::info!(summary = %n.summary, "reconcile from the menu done");
                self.presenter.tell(&n).await;
            }
            Done::PageOpened(Ok(())) => {}
            Done::PageOpened(Err(n)) => self.presenter.tell(&n).await,
        }
    }

    async fn shutdown(mut self) {
        tracing::info!("tray stopping");
        self.tasks.abort_all();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(SHUTDOWN, drain).await;
        if let Some(h) = self.presenter.handle.take() {
            if tokio::time::timeout(SHUTDOWN, h.shutdown()).await.is_err() {
                tracing::warn!("the tray item did not leave the bus in time");
            }
        }
        tracing::info!("tray stopped");
    }
}

/// The notification for a reconcile pass's outcome.
fn reconcile_notice(result: &Result<ReconcileReport, String>) -> Notice {
    match result {
        Ok(r) if r.ran => Notice {
            summary: "事後確認を行いました".to_string(),
            body: view::pass_ja(&r.pass),
            indicator: Indicator::Online,
        },
        Ok(_) => Notice {
            summary: "事後確認を行えませんでした".to_string(),
            body: "資格確認システムにつながらないため、問い合わせていません。つながり次第、自動で事後確認します。".to_string(),
            indicator: Indicator::Offline,
        },
        Err(message) => Notice {
            summary: "事後確認を行えませんでした".to_string(),
            body: message.clone(),
            indicator: Indicator::Unreachable,
        },
    }
}

/// `xdg-open <url>`: the desktop's browser opens the reception page. The browser is not the
/// tray's child for long (xdg-open hands it over), and it is never killed with the tray.
async fn open_page(url: &str) -> Result<(), Notice> {
    let failed = |why: String| Notice {
        summary: "受付画面を開けませんでした".to_string(),
        body: format!("{why}ブラウザで {url} を開いてください。"),
        indicator: Indicator::Degraded,
    };
    let child = tokio::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!("xdg-open not found");
            return Err(failed(
                "xdg-open が見つかりません（xdg-utils が入っていません）。".to_string(),
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot run xdg-open");
            return Err(failed("xdg-open を実行できません。".to_string()));
        }
    };
    match child.wait().await {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => {
            tracing::warn!(%status, "xdg-open failed");
            Err(failed("ブラウザを起動できませんでした。".to_string()))
        }
        Err(e) => {
            tracing::warn!(error = %e, "waiting for xdg-open failed");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::PassCounts;

    #[test]
    fn backoff_doubles_to_five_seconds_and_resets() {
        let mut b = Backoff::new();
        let seen: Vec<_> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(seen, [500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn reconcile_outcomes_read_as_staff_expect() {
        let ran = Ok(ReconcileReport {
            ran: true,
            pass: PassCounts {
                examined: 2,
                resolved: 1,
                needs_staff: 1,
                failed: 0,
            },
        });
        let n = reconcile_notice(&ran);
        assert_eq!(n.summary, "事後確認を行いました");
        assert!(n.body.contains("確定 1件"), "{n:?}");
        let down = Ok(ReconcileReport {
            ran: false,
            pass: PassCounts::default(),
        });
        assert!(reconcile_notice(&down).body.contains("つながらない"));
        let lost = Err("tsunagid との接続が切れました。".to_string());
        assert_eq!(
            reconcile_notice(&lost).body,
            "tsunagid との接続が切れました。"
        );
    }
}
