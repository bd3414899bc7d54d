//! The StatusNotifierItem (トレイアイコン) the desktop's tray host shows, through ksni: the
//! icon, the title, the tooltip and the menu, all read from the current [`Link`].
//!
//! The item holds no logic of its own. Menu items only send a [`Command`] to the follower
//! task (ksni calls them synchronously, with its state locked). When the tray host's watcher goes away or comes back, ksni says so here and the
//! follower switches notifications on or off.

use std::collections::HashMap;
use std::sync::Arc;

use ksni::menu::StandardItem;
use ksni::{Category, Icon, MenuItem, Status, ToolTip};
use tokio::sync::mpsc::UnboundedSender;

use crate::view::{Indicator, Link, TITLE};

/// What a menu item or the tray host asks of the follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// 受付画面を開く.
    OpenPage,
    /// 状態を表示.
    ShowStatus,
    /// 今すぐ事後確認.
    Reconcile,
    /// 終了.
    Quit,
    /// The tray host appeared (`true`) or went away (`false`).
    TrayHost(bool),
}

/// Menu labels (メニュー), also what tests look for.
pub mod labels {
    /// Opens the reception page in the browser.
    pub const OPEN_PAGE: &str = "受付画面を開く";
    /// Shows the status as a notification.
    pub const SHOW_STATUS: &str = "状態を表示";
    /// Runs a reconcile pass now.
    pub const RECONCILE: &str = "今すぐ事後確認";
    /// Shown instead while a pass runs.
    pub const RECONCILING: &str = "事後確認中…";
    /// Quits the tray.
    pub const QUIT: &str = "終了";
}

/// The tray item.
#[derive(Debug)]
pub struct Item {
    /// What the tray knows now.
    pub link: Link,
    /// A pass started from the menu is running.
    pub reconciling: bool,
    commands: UnboundedSender<Command>,
    pixmaps: Arc<HashMap<Indicator, Vec<Icon>>>,
}

impl Item {
    /// A new item showing "connecting".
    pub fn new(commands: UnboundedSender<Command>) -> Self {
        let pixmaps = Indicator::ALL
            .iter()
            .map(|&i| {
                let icons = crate::icon::all_sizes(i)
                    .into_iter()
                    .map(|p| Icon {
                        width: p.size as i32,
                        height: p.size as i32,
                        data: p.argb,
                    })
                    .collect();
                (i, icons)
            })
            .collect();
        Self {
            link: Link::Connecting,
            reconciling: false,
            commands,
            pixmaps: Arc::new(pixmaps),
        }
    }

    fn send(&self, command: Command) {
        // The follower is gone only while the process ends.
        if self.commands.send(command).is_err() {
            tracing::debug!(?command, "menu command after the follower ended");
        }
    }

    fn connected(&self) -> bool {
        matches!(self.link, Link::Connected(_))
    }
}

impl ksni::Tray for Item {
    // A left click opens the menu: every action is there, and hosts differ on what a click
    // on an item without a window should do.
    const MENU_ON_ACTIVATE: bool = true;

    fn id(&self) -> String {
        "tsunagi-tray".to_string()
    }

    fn category(&self) -> Category {
        Category::SystemServices
    }

    fn title(&self) -> String {
        TITLE.to_string()
    }

    fn status(&self) -> Status {
        if self.link.indicator().needs_attention() {
            Status::NeedsAttention
        } else {
            Status::Active
        }
    }

    fn icon_name(&self) -> String {
        self.link.indicator().icon_name().to_string()
    }

    fn icon_pixmap(&self) -> Vec<Icon> {
        self.pixmaps
            .get(&self.link.indicator())
            .cloned()
            .unwrap_or_default()
    }

    // Hosts show the attention icon in NeedsAttention: the same state icon.
    fn attention_icon_name(&self) -> String {
        self.icon_name()
    }

    fn attention_icon_pixmap(&self) -> Vec<Icon> {
        self.icon_pixmap()
    }

    fn tool_tip(&self) -> ToolTip {
        ToolTip {
            icon_name: self.icon_name(),
            icon_pixmap: Vec::new(),
            title: self.link.headline(),
            description: self.link.detail(),
        }
    }

    fn menu(&self) -> Vec<MenuItem<Self>> {
        let connected = self.connected();
        vec![
            StandardItem {
                label: labels::OPEN_PAGE.into(),
                icon_name: "web-browser".into(),
                enabled: connected,
                activate: Box::new(|item: &mut Self| item.send(Command::OpenPage)),
                ..Default::default()
            }
            .into(),
            StandardItem {
                label: labels::SHOW_STATUS.into(),
                icon_name: "dialog-information".into(),
                activate: Box::new(|item: &mut Self| item.send(Command::ShowStatus)),
                ..Default::default()
            }
            .into(),
            StandardItem {
                label: if self.reconciling {
                    labels::RECONCILING
                } else {
                    labels::RECONCILE
                }
                .into(),
                icon_name: "view-refresh".into(),
                enabled: connected && !self.reconciling,
                activate: Box::new(|item: &mut Self| item.send(Command::Reconcile)),
                ..Default::default()
            }
            .into(),
            MenuItem::Separator,
            StandardItem {
                label: labels::QUIT.into(),
                icon_name: "application-exit".into(),
                activate: Box::new(|item: &mut Self| item.send(Command::Quit)),
                ..Default::default()
            }
            .into(),
        ]
    }

    fn watcher_online(&self) {
        tracing::info!("tray host back: showing the tray item");
        self.send(Command::TrayHost(true));
    }

    fn watcher_offline(&self, reason: ksni::OfflineReason) -> bool {
        tracing::info!(?reason, "no tray host: falling back to notifications");
        self.send(Command::TrayHost(false));
        // Keep the item: it registers again when a host appears.
        true
    }
}
