//! The real parts the tray tests run against, each owned by one test and ended when dropped:
//!
//! - [`Bus`]: a private `dbus-daemon --session`; its address goes only to the child
//!   processes' environment and to the test's own connections, never to the test process's
//!   environment (tests run in parallel, each with its own bus);
//! - [`Watcher`]: a minimal `org.kde.StatusNotifierWatcher` owned by the test, the part of a
//!   tray host that items register with; [`Host`] reads an item as a tray host does
//!   (`org.kde.StatusNotifierItem` properties, `com.canonical.dbusmenu` layout and events);
//! - [`Notifications`]: a test-owned `org.freedesktop.Notifications` server recording every
//!   `Notify` call;
//! - [`Tsunagid`]: the real daemon binary Cargo built into the same target directory, on a
//!   configuration the tray reads too ([`Clinic`]); [`Tray`]: the real `tsunagi-tray` binary;
//! - [`eventually`]: polling with a deadline, never a fixed sleep as an assertion.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use oqs_sim::scenario::{self, Scenario};
use tempfile::TempDir;
use zbus::zvariant::{OwnedValue, Value};

/// How long a wait for a state may take on a loaded two-core machine.
pub const WAIT: Duration = Duration::from_secs(20);

/// Today in Japan (the simulator's scenario and the daemon's dates).
pub fn today() -> chrono::NaiveDate {
    (chrono::Utc::now() + chrono::Duration::hours(9)).date_naive()
}

/// The simulator's standard scenario, made once per test binary.
pub fn scenario() -> &'static Scenario {
    static S: OnceLock<Scenario> = OnceLock::new();
    S.get_or_init(|| scenario::standard(today()).expect("standard scenario"))
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `probe` until it gives `Ok`, at most `limit`; fails the test with `what` and the
/// last `Err` (what was seen instead).
pub async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match probe().await {
            Ok(t) => return t,
            Err(seen) => {
                if Instant::now() >= deadline {
                    panic!("never happened within {limit:?}: {what}\nlast seen: {seen}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A private session bus.
pub struct Bus {
    child: Child,
    pub address: String,
}

impl Bus {
    pub fn start() -> Self {
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // It warns that it cannot raise its fd limit when not root: not our business.
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian package dbus-daemon) must be installed");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let address = line.trim().to_string();
        assert!(address.starts_with("unix:"), "dbus-daemon said {line:?}");
        Self { child, address }
    }

    /// A connection of the test's own to this bus.
    pub async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap()
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal StatusNotifierWatcher: records who registered.
#[derive(Clone, Default)]
pub struct Watcher {
    items: Arc<Mutex<Vec<String>>>,
}

#[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
impl Watcher {
    async fn register_status_notifier_item(
        &self,
        service: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) {
        // The spec allows a bus name or an object path (then the sender is the item).
        let name = if service.starts_with('/') {
            header.sender().map(|s| s.to_string()).unwrap_or_default()
        } else {
            service
        };
        let mut items = self.items.lock().unwrap();
        if !items.contains(&name) {
            items.push(name);
        }
    }

    async fn register_status_notifier_host(&self, _service: String) {}

    #[zbus(property)]
    async fn registered_status_notifier_items(&self) -> Vec<String> {
        self.items.lock().unwrap().clone()
    }

    #[zbus(property)]
    async fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    async fn protocol_version(&self) -> i32 {
        0
    }
}

impl Watcher {
    /// Owns `org.kde.StatusNotifierWatcher` on `bus`; the connection lives as long as the
    /// returned value.
    pub async fn start(bus: &Bus) -> (Self, zbus::Connection) {
        let w = Watcher::default();
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .serve_at("/StatusNotifierWatcher", w.clone())
            .unwrap()
            .name("org.kde.StatusNotifierWatcher")
            .unwrap()
            .build()
            .await
            .unwrap();
        (w, conn)
    }

    pub fn items(&self) -> Vec<String> {
        self.items.lock().unwrap().clone()
    }
}

/// One `Notify` call.
#[derive(Debug, Clone)]
pub struct Shown {
    pub app_name: String,
    pub icon: String,
    pub summary: String,
    pub body: String,
    pub urgency: Option<u8>,
}

/// A notification server recording what it was asked to show.
#[derive(Clone, Default)]
pub struct Notifications {
    shown: Arc<Mutex<Vec<Shown>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Notifications {
    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        app_name: String,
        replaces_id: u32,
        app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        hints: HashMap<String, OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let urgency = hints.get("urgency").and_then(|v| u8::try_from(v).ok());
        let mut shown = self.shown.lock().unwrap();
        shown.push(Shown {
            app_name,
            icon: app_icon,
            summary,
            body,
            urgency,
        });
        if replaces_id != 0 {
            replaces_id
        } else {
            shown.len() as u32
        }
    }

    async fn get_capabilities(&self) -> Vec<String> {
        vec!["body".to_string()]
    }

    async fn get_server_information(&self) -> (String, String, String, String) {
        (
            "test".to_string(),
            "tsunagi".to_string(),
            "0".to_string(),
            "1.2".to_string(),
        )
    }

    async fn close_notification(&self, _id: u32) {}
}

impl Notifications {
    pub async fn start(bus: &Bus) -> (Self, zbus::Connection) {
        let n = Notifications::default();
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .serve_at("/org/freedesktop/Notifications", n.clone())
            .unwrap()
            .name("org.freedesktop.Notifications")
            .unwrap()
            .build()
            .await
            .unwrap();
        (n, conn)
    }

    pub fn shown(&self) -> Vec<Shown> {
        self.shown.lock().unwrap().clone()
    }

    /// Waits for a notification (after the first `after` ones) whose summary and body
    /// together contain `needle`.
    pub async fn wait_for(&self, after: usize, needle: &str) -> Shown {
        eventually(
            &format!("a notification saying {needle:?}"),
            WAIT,
            async || {
                let shown = self.shown();
                shown
                    .iter()
                    .skip(after)
                    .find(|s| format!("{}\n{}", s.summary, s.body).contains(needle))
                    .cloned()
                    .ok_or_else(|| format!("{shown:#?}"))
            },
        )
        .await
    }
}

/// The item as a tray host reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemView {
    pub status: String,
    pub icon_name: String,
    pub title: String,
    pub tooltip_title: String,
    pub tooltip_body: String,
    pub pixmap_sizes: Vec<i32>,
}

/// One menu entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: i32,
    pub label: String,
    pub enabled: bool,
}

/// `IconPixmap`'s type: width, height, ARGB32 bytes.
type Pixmaps = Vec<(i32, i32, Vec<u8>)>;
/// `ToolTip`'s type: icon name, icon pixmaps, title, description.
type ToolTip = (String, Pixmaps, String, String);

/// Reads a StatusNotifierItem the way a tray host does.
pub struct Host {
    conn: zbus::Connection,
    pub service: String,
}

fn prop<T>(map: &HashMap<String, OwnedValue>, name: &str) -> Option<T>
where
    T: TryFrom<OwnedValue>,
{
    map.get(name)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| T::try_from(v).ok())
}

impl Host {
    pub fn new(conn: zbus::Connection, service: String) -> Self {
        Self { conn, service }
    }

    async fn call<B>(
        &self,
        path: &str,
        interface: &str,
        method: &str,
        body: &B,
    ) -> Result<zbus::Message, String>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.conn
            .call_method(
                Some(self.service.as_str()),
                path,
                Some(interface),
                method,
                body,
            )
            .await
            .map_err(|e| format!("{method}: {e}"))
    }

    /// Every property of the item (`org.freedesktop.DBus.Properties.GetAll`, no cache).
    pub async fn item(&self) -> Result<ItemView, String> {
        let reply = self
            .call(
                "/StatusNotifierItem",
                "org.freedesktop.DBus.Properties",
                "GetAll",
                &("org.kde.StatusNotifierItem",),
            )
            .await?;
        let props: HashMap<String, OwnedValue> =
            reply.body().deserialize().map_err(|e| e.to_string())?;
        let text = |name: &str| prop::<String>(&props, name).unwrap_or_default();
        let tooltip: ToolTip = props
            .get("ToolTip")
            .ok_or("no ToolTip")?
            .try_clone()
            .map_err(|e| e.to_string())?
            .try_into()
            .map_err(|e: zbus::zvariant::Error| format!("ToolTip: {e}"))?;
        let pixmaps: Pixmaps = props
            .get("IconPixmap")
            .ok_or("no IconPixmap")?
            .try_clone()
            .map_err(|e| e.to_string())?
            .try_into()
            .map_err(|e: zbus::zvariant::Error| format!("IconPixmap: {e}"))?;
        Ok(ItemView {
            status: text("Status"),
            icon_name: text("IconName"),
            title: text("Title"),
            tooltip_title: tooltip.2,
            tooltip_body: tooltip.3,
            pixmap_sizes: pixmaps.iter().map(|p| p.0).collect(),
        })
    }

    /// The menu's top level, from `GetLayout` at the item's `Menu` path.
    pub async fn menu(&self) -> Result<Vec<Entry>, String> {
        let path: OwnedValue = self
            .call(
                "/StatusNotifierItem",
                "org.freedesktop.DBus.Properties",
                "Get",
                &("org.kde.StatusNotifierItem", "Menu"),
            )
            .await?
            .body()
            .deserialize()
            .map_err(|e| e.to_string())?;
        let path = zbus::zvariant::OwnedObjectPath::try_from(path).map_err(|e| e.to_string())?;
        let reply = self
            .call(
                path.as_str(),
                "com.canonical.dbusmenu",
                "GetLayout",
                &(0i32, -1i32, Vec::<String>::new()),
            )
            .await?;
        type Node = (i32, HashMap<String, OwnedValue>, Vec<OwnedValue>);
        let (_revision, (_root, _props, children)): (u32, Node) =
            reply.body().deserialize().map_err(|e| e.to_string())?;
        let mut entries = Vec::new();
        for child in children {
            let node: Node = child
                .try_into()
                .map_err(|e: zbus::zvariant::Error| format!("menu node: {e}"))?;
            let (id, props, _) = node;
            if prop::<String>(&props, "type").as_deref() == Some("separator") {
                continue;
            }
            entries.push(Entry {
                id,
                label: prop::<String>(&props, "label").unwrap_or_default(),
                // dbusmenu leaves out properties at their default (enabled: true).
                enabled: prop::<bool>(&props, "enabled").unwrap_or(true),
            });
        }
        Ok(entries)
    }

    /// Clicks the entry labelled `label`, as a host does when staff pick it.
    pub async fn click(&self, label: &str) -> Result<(), String> {
        let menu = self.menu().await?;
        let entry = menu
            .iter()
            .find(|e| e.label == label)
            .ok_or_else(|| format!("no {label:?} in {menu:?}"))?;
        self.call(
            "/MenuBar",
            "com.canonical.dbusmenu",
            "Event",
            &(entry.id, "clicked", Value::from(""), 0u32),
        )
        .await?;
        Ok(())
    }

    /// Whether the item's name still has an owner on the bus.
    pub async fn present(&self) -> bool {
        let dbus = zbus::fdo::DBusProxy::new(&self.conn).await.unwrap();
        match zbus::names::BusName::try_from(self.service.as_str()) {
            Ok(name) => dbus.name_has_owner(name).await.unwrap_or(false),
            Err(_) => false,
        }
    }
}

/// A clinic's configuration and data directory, shared by the daemon and the tray.
pub struct Clinic {
    pub dir: TempDir,
    pub config: PathBuf,
    pub addr: SocketAddr,
    pub token_file: PathBuf,
}

impl Clinic {
    /// A configuration: the daemon's data in `<dir>/data`, the API on a free loopback port,
    /// the breaker quick (one failure is offline, a probe a second), and no timed reconcile
    /// passes (only the one at start and the ones asked for).
    pub fn new(oqs_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let text = format!(
            "data_dir = {data:?}\ninstitution_code = {inst:?}\n\
             [oqs]\nurl = {oqs_url:?}\ntimeout_ms = 2000\n\
             [api]\nlisten = \"{addr}\"\n\
             [reconcile]\ninterval_secs = 3600\n\
             [health]\noffline_after = 1\nprobe_secs = 1\n",
            data = data.display().to_string(),
            inst = scenario().institution_code,
        );
        let config = dir.path().join("tsunagi.toml");
        std::fs::write(&config, text).unwrap();
        Self {
            token_file: data.join("api.token"),
            dir,
            config,
            addr,
        }
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(&self.token_file)
            .unwrap()
            .trim()
            .to_string()
    }
}

/// The `tsunagid` binary of this target directory.
pub fn tsunagid_binary() -> PathBuf {
    // target/debug/deps/<test> → target/debug/tsunagid
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps");
    let bin = dir.join("tsunagid");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p tsunagi --bins` first (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// A running `tsunagid`.
pub struct Tsunagid {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Tsunagid {
    /// Starts the daemon on `clinic` and waits until its API accepts connections.
    pub async fn start(clinic: &Clinic) -> Self {
        let n = std::fs::read_dir(clinic.dir.path()).unwrap().count();
        let log = clinic.dir.path().join(format!("tsunagid-{n}.log"));
        let child = Command::new(tsunagid_binary())
            .arg("--config")
            .arg(&clinic.config)
            .arg("--no-reader")
            .env("TSUNAGI_LOG", "info")
            .env_remove("TSUNAGI_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Self {
            child: Some(child),
            log,
        };
        let addr = clinic.addr;
        let token_file = clinic.token_file.clone();
        eventually("tsunagid listening", Duration::from_secs(30), async || {
            if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("tsunagid exited during start ({status}):\n{}", d.log_text());
            }
            if token_file.exists()
                && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        })
        .await;
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as systemd stops it; waits for the exit.
    pub async fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        terminate(&mut child).await
    }
}

impl Drop for Tsunagid {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGTERM and wait (≤ 10 s, then SIGKILL and fail).
async fn terminate(child: &mut Child) -> ExitStatus {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM failed");
    wait_exit(child, Duration::from_secs(10)).await
}

async fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not end within {limit:?}", child.id());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running `tsunagi-tray`.
pub struct Tray {
    child: Option<Child>,
    pub log: PathBuf,
    /// Where the fake `xdg-open` writes the URL it was given.
    pub opened: PathBuf,
}

impl Tray {
    /// Starts the tray on `bus` for `clinic`'s daemon. Its environment is only what a session
    /// gives it: PATH, HOME and the bus address (no token anywhere). With `xdg_open`, a fake
    /// `xdg-open` that records its argument is first on PATH; without, there is none.
    pub fn start(bus: &Bus, clinic: &Clinic, xdg_open: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tray-")
            .tempdir_in(clinic.dir.path())
            .unwrap()
            .keep();
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let opened = dir.join("opened.txt");
        if xdg_open {
            let script = bin.join("xdg-open");
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n",
                    opened.display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // Without the fake, PATH still has the shell tools but no xdg-open.
        let path = if xdg_open {
            format!("{}:/usr/bin:/bin", bin.display())
        } else {
            bin.display().to_string()
        };
        let log = dir.join("tray.log");
        let child = Command::new(env!("CARGO_BIN_EXE_tsunagi-tray"))
            .arg("--config")
            .arg(&clinic.config)
            .args(["--refresh-secs", "1"])
            .env_clear()
            .env("PATH", path)
            .env("HOME", dir.as_os_str())
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("TSUNAGI_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child: Some(child),
            log,
            opened,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The item's bus name: ksni's `org.kde.StatusNotifierItem-<pid>-<n>`, first instance.
    pub fn service(&self) -> String {
        format!("org.kde.StatusNotifierItem-{}-1", self.pid())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to end by itself (after 終了).
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        wait_exit(&mut child, limit).await
    }

    /// SIGTERM and wait.
    pub async fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        terminate(&mut child).await
    }
}

impl Drop for Tray {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
