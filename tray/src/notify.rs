//! Desktop notifications (デスクトップ通知) through `org.freedesktop.Notifications` on the
//! session bus (Desktop Notifications Specification 1.2): the tray's voice where the desktop
//! shows no tray, and the answer to "show the status" and "reconcile now" everywhere.
//!
//! Two channels, each replacing its own previous notification, so a flapping line does not
//! stack a pile of them: [`Channel::State`] for state changes, [`Channel::Action`] for what a
//! menu item did. A desktop without a notification server is logged, not fatal.

use std::collections::HashMap;

use zbus::zvariant::Value;

use crate::view::Notice;

#[zbus::proxy(
    interface = "org.freedesktop.Notifications",
    default_service = "org.freedesktop.Notifications",
    default_path = "/org/freedesktop/Notifications"
)]
trait Notifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: &str,
        replaces_id: u32,
        app_icon: &str,
        summary: &str,
        body: &str,
        actions: &[&str],
        hints: HashMap<&str, Value<'_>>,
        expire_timeout: i32,
    ) -> zbus::Result<u32>;
}

/// Which earlier notification a new one replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The daemon's state changed.
    State,
    /// A menu item's outcome.
    Action,
}

/// The application name notifications carry.
const APP_NAME: &str = "Tsunagi";

/// Sends notifications; connects to the session bus on first use.
#[derive(Debug, Default)]
pub struct Notifier {
    conn: Option<zbus::Connection>,
    last: HashMap<Channel, u32>,
    failed_before: bool,
}

/// The body with the markup characters some servers interpret escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Notifier {
    /// Shows `notice`, replacing the last one on `channel`. Returns whether a server took it.
    /// Cancel-safe (an unsent notification is simply not shown).
    pub async fn send(&mut self, channel: Channel, notice: &Notice) -> bool {
        match self.try_send(channel, notice).await {
            Ok(id) => {
                self.last.insert(channel, id);
                self.failed_before = false;
                tracing::debug!(summary = %notice.summary, "notification shown");
                true
            }
            Err(e) => {
                // Once per outage, not once per notification.
                if !self.failed_before {
                    tracing::warn!(error = %e, "cannot show a desktop notification");
                }
                self.failed_before = true;
                // A broken connection is made again next time.
                self.conn = None;
                false
            }
        }
    }

    async fn try_send(&mut self, channel: Channel, notice: &Notice) -> zbus::Result<u32> {
        let conn = match &self.conn {
            Some(c) => c.clone(),
            None => {
                let c = zbus::Connection::session().await?;
                self.conn = Some(c.clone());
                c
            }
        };
        let proxy = NotificationsProxy::new(&conn).await?;
        let urgency: u8 = if notice.indicator.needs_attention() {
            2
        } else {
            1
        };
        let mut hints = HashMap::new();
        hints.insert("urgency", Value::U8(urgency));
        hints.insert("desktop-entry", Value::from("tsunagi-tray"));
        let replaces = self.last.get(&channel).copied().unwrap_or(0);
        proxy
            .notify(
                APP_NAME,
                replaces,
                notice.indicator.icon_name(),
                &notice.summary,
                &escape(&notice.body),
                &[],
                hints,
                -1,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(escape("a <b> & c"), "a &lt;b&gt; &amp; c");
        assert_eq!(escape("事後確認待ち 3件"), "事後確認待ち 3件");
    }
}
