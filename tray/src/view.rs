//! What the tray shows (表示内容): the daemon's state as read over the API, turned into an
//! indicator, a title, a tooltip and — where the desktop has no tray — notifications.
//!
//! Pure: no I/O, no clock. [`Link`] is what the tray knows about tsunagid (connecting, not
//! reachable and why, or connected with its [`Summary`]); [`Indicator`] is the one icon state
//! it shows; [`Link::headline`] and [`Link::detail`] are the staff-facing texts; [`notice`]
//! decides which changes deserve a desktop notification when there is no tray host.
//!
//! # Which state wins
//!
//! One icon has to say the most urgent thing, in this order:
//!
//! 1. **unreachable** — tsunagid does not answer (or something else answers on its port):
//!    nothing else the tray could say is known.
//! 2. **offline** — the qualification system cannot be reached: reception must capture checks
//!    and charge the usual co-payment now, which matters more at the desk than any backlog.
//! 3. **overdue** — some 事後確認 is past its deadline: staff must act, so it wins over a line
//!    that is merely online or degraded.
//! 4. **degraded** — answers are slow or some fail; checks still go through.
//! 5. **online**.
//!
//! The tooltip always carries the queue size and the overdue count, whatever the icon shows.

use serde::Deserialize;

/// The line to the qualification system (回線の状態), as `GET /v1/status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Line {
    /// Answers come.
    Online,
    /// Some recent answers failed; still asking.
    Degraded,
    /// Failing: checks are captured without asking.
    Offline,
    /// A state this tray does not know (a newer daemon); shown like `degraded`.
    #[serde(other)]
    Unknown,
}

impl Line {
    /// Staff-facing label (the daemon's own wording).
    pub fn label_ja(self) -> &'static str {
        match self {
            Line::Online => "オンライン",
            Line::Degraded => "不安定（応答が遅い・失敗あり）",
            Line::Offline => "オフライン（資格確認システムにつながりません）",
            Line::Unknown => "状態不明",
        }
    }
}

/// The counts of one reconcile pass (事後確認の結果), a subset of the daemon's `PassReport`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PassCounts {
    /// Open checks looked at.
    pub examined: u64,
    /// Checks whose claim basis was decided.
    pub resolved: u64,
    /// Checks that still need staff.
    pub needs_staff: u64,
    /// Checks whose query failed (retried later).
    pub failed: u64,
}

/// What the tray keeps of `GET /v1/status` (状態).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Summary {
    /// The line.
    pub line: Line,
    /// Checks waiting for 事後確認 or staff.
    pub queue: u64,
    /// Of which past their deadline.
    pub overdue: u64,
    /// The last reconcile pass, if one ran since the daemon started.
    #[serde(default)]
    pub last_pass: Option<PassCounts>,
}

/// Why tsunagid cannot be followed right now (接続できない理由), in words staff can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Japanese, one or two sentences.
    pub message_ja: String,
}

/// What the tray knows about tsunagid (接続状態).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Started, first attempt not finished yet.
    Connecting,
    /// Not reachable, not proven, or not readable; retried with a backoff.
    Unreachable(Problem),
    /// Following the daemon; its last status.
    Connected(Summary),
}

/// The icon state (アイコンの状態). Stable kebab-case names, the same in logs and docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Indicator {
    /// The line is online and nothing is overdue.
    Online,
    /// The line is degraded and nothing is overdue.
    Degraded,
    /// The line is offline.
    Offline,
    /// Some 事後確認 is past its deadline (line online or degraded).
    Overdue,
    /// tsunagid is not reachable (or not yet).
    Unreachable,
}

impl Indicator {
    /// Every state, for tests and icon tables.
    pub const ALL: [Indicator; 5] = [
        Indicator::Online,
        Indicator::Degraded,
        Indicator::Offline,
        Indicator::Overdue,
        Indicator::Unreachable,
    ];

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Indicator::Online => "online",
            Indicator::Degraded => "degraded",
            Indicator::Offline => "offline",
            Indicator::Overdue => "overdue",
            Indicator::Unreachable => "unreachable",
        }
    }

    /// A freedesktop icon name (Icon Naming Specification) every theme has.
    pub fn icon_name(self) -> &'static str {
        match self {
            Indicator::Online => "network-idle",
            Indicator::Degraded => "network-error",
            Indicator::Offline => "network-offline",
            // "The icon used when an appointment was missed": a deadline passed.
            Indicator::Overdue => "appointment-missed",
            Indicator::Unreachable => "dialog-error",
        }
    }

    /// Whether the tray host should draw the user's eye to the item.
    pub fn needs_attention(self) -> bool {
        matches!(
            self,
            Indicator::Offline | Indicator::Overdue | Indicator::Unreachable
        )
    }
}

/// The item's title (タイトル): the application, whatever its state.
pub const TITLE: &str = "Tsunagi 資格確認";

/// "Not reachable" as staff read it, the start of every unreachable headline.
pub const UNREACHABLE_JA: &str = "tsunagid に接続できません";

impl Summary {
    /// The icon state of a connected daemon (see the module doc for the order).
    pub fn indicator(&self) -> Indicator {
        match self.line {
            Line::Offline => Indicator::Offline,
            _ if self.overdue > 0 => Indicator::Overdue,
            Line::Online => Indicator::Online,
            Line::Degraded | Line::Unknown => Indicator::Degraded,
        }
    }

    /// 「事後確認待ち 3件（期限切れ 1件）」.
    pub fn counts_ja(&self) -> String {
        if self.overdue > 0 {
            format!(
                "事後確認待ち {}件（期限切れ {}件）",
                self.queue, self.overdue
            )
        } else {
            format!("事後確認待ち {}件", self.queue)
        }
    }
}

impl Link {
    /// The icon state.
    pub fn indicator(&self) -> Indicator {
        match self {
            Link::Connecting | Link::Unreachable(_) => Indicator::Unreachable,
            Link::Connected(s) => s.indicator(),
        }
    }

    /// The connected daemon's status, if connected.
    pub fn summary(&self) -> Option<&Summary> {
        match self {
            Link::Connected(s) => Some(s),
            _ => None,
        }
    }

    /// One line for the tooltip's title: the line's state and the counts, e.g.
    /// 「オンライン — 事後確認待ち 3件（期限切れ 1件）」.
    pub fn headline(&self) -> String {
        match self {
            Link::Connecting => "tsunagid に接続しています…".to_string(),
            Link::Unreachable(_) => UNREACHABLE_JA.to_string(),
            Link::Connected(s) => {
                let line = match s.line {
                    // The short form: the tooltip's title must stay one line.
                    Line::Offline => "オフライン",
                    Line::Degraded => "不安定",
                    other => other.label_ja(),
                };
                format!("{line} — {}", s.counts_ja())
            }
        }
    }

    /// What it means and what to do now, for the tooltip's body and notifications.
    pub fn detail(&self) -> String {
        match self {
            Link::Connecting => String::new(),
            Link::Unreachable(p) => format!("{}\n自動で再接続します。", p.message_ja),
            Link::Connected(s) => {
                let mut out = match s.indicator() {
                    Indicator::Offline => "資格確認システムにつながりません。通常の負担割合で受け付け、後で事後確認します。".to_string(),
                    Indicator::Overdue => format!(
                        "期限を過ぎた事後確認が {}件あります。受付画面で確認し、対応してください。",
                        s.overdue
                    ),
                    Indicator::Degraded => "資格確認システムの応答が遅いか、一部失敗しています。確認は続けられます。".to_string(),
                    Indicator::Online | Indicator::Unreachable => {
                        "資格確認システムにつながっています。".to_string()
                    }
                };
                if s.line == Line::Degraded && s.overdue > 0 {
                    out.push_str("\n資格確認システムの応答が遅いか、一部失敗しています。");
                }
                out
            }
        }
    }
}

/// A desktop notification (デスクトップ通知) to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The summary line.
    pub summary: String,
    /// The body.
    pub body: String,
    /// The icon state it is about (its icon, and urgency for attention states).
    pub indicator: Indicator,
}

impl Notice {
    /// The notification for "show the status" (状態を表示): the whole picture now.
    pub fn status(link: &Link) -> Notice {
        let mut body = link.detail();
        if let Some(pass) = link.summary().and_then(|s| s.last_pass) {
            body.push_str(&format!("\n前回の事後確認: {}", pass_ja(&pass)));
        }
        Notice {
            summary: link.headline(),
            body,
            indicator: link.indicator(),
        }
    }
}

/// 「対象 5件: 確定 3件、要対応 1件、再確認待ち 1件」.
pub fn pass_ja(p: &PassCounts) -> String {
    format!(
        "対象 {}件: 確定 {}件、要対応 {}件、再確認待ち {}件",
        p.examined, p.resolved, p.needs_staff, p.failed
    )
}

/// The notification a change from `before` to `after` deserves where the desktop shows no
/// tray (通知による代替表示), if any: the line going offline or coming back, overdue checks
/// appearing or growing, tsunagid lost or found. Online ↔ degraded flapping and queue changes
/// are left to "show the status", so a bad line does not bury the desk in notifications.
pub fn notice(before: &Link, after: &Link) -> Option<Notice> {
    let make = |summary: String, body: String| {
        Some(Notice {
            summary,
            body,
            indicator: after.indicator(),
        })
    };
    match (before, after) {
        (Link::Unreachable(a), Link::Unreachable(b)) if a == b => None,
        (_, Link::Unreachable(_)) => make(after.headline(), after.detail()),
        (Link::Connecting, Link::Connecting) => None,
        (_, Link::Connecting) => None,
        (Link::Connecting | Link::Unreachable(_), Link::Connected(_)) => make(
            format!("tsunagid に接続しました — {}", after.headline()),
            after.detail(),
        ),
        (Link::Connected(a), Link::Connected(b)) => {
            let went_offline = a.line != Line::Offline && b.line == Line::Offline;
            let came_back = a.line == Line::Offline && b.line != Line::Offline;
            if went_offline {
                make(
                    "オフラインになりました（資格確認システムにつながりません）".to_string(),
                    format!("{}\n{}", after.detail(), b.counts_ja()),
                )
            } else if came_back {
                make(
                    format!("資格確認システムにつながりました — {}", after.headline()),
                    "事後確認は自動で行います。".to_string(),
                )
            } else if b.overdue > a.overdue {
                make(
                    format!("期限切れの事後確認が {}件あります", b.overdue),
                    after.detail(),
                )
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected(line: Line, queue: u64, overdue: u64) -> Link {
        Link::Connected(Summary {
            line,
            queue,
            overdue,
            last_pass: None,
        })
    }

    fn unreachable(why: &str) -> Link {
        Link::Unreachable(Problem {
            message_ja: why.to_string(),
        })
    }

    #[test]
    fn the_most_urgent_state_wins() {
        // It shows offline over overdue, overdue over online and degraded.
        let cases = [
            (connected(Line::Online, 0, 0), Indicator::Online),
            (connected(Line::Online, 5, 0), Indicator::Online),
            (connected(Line::Degraded, 5, 0), Indicator::Degraded),
            (connected(Line::Unknown, 0, 0), Indicator::Degraded),
            (connected(Line::Online, 5, 1), Indicator::Overdue),
            (connected(Line::Degraded, 5, 1), Indicator::Overdue),
            (connected(Line::Offline, 5, 1), Indicator::Offline),
            (connected(Line::Offline, 0, 0), Indicator::Offline),
            (unreachable("x"), Indicator::Unreachable),
            (Link::Connecting, Indicator::Unreachable),
        ];
        for (link, want) in cases {
            assert_eq!(link.indicator(), want, "{link:?}");
        }
    }

    #[test]
    fn the_headline_carries_the_queue_and_the_overdue_count() {
        assert_eq!(
            connected(Line::Online, 3, 1).headline(),
            "オンライン — 事後確認待ち 3件（期限切れ 1件）"
        );
        assert_eq!(
            connected(Line::Online, 0, 0).headline(),
            "オンライン — 事後確認待ち 0件"
        );
        assert_eq!(
            connected(Line::Offline, 2, 0).headline(),
            "オフライン — 事後確認待ち 2件"
        );
        assert_eq!(unreachable("x").headline(), UNREACHABLE_JA);
        assert!(unreachable("ポートが違います。")
            .detail()
            .starts_with("ポートが違います。"));
        assert!(connected(Line::Offline, 2, 0)
            .detail()
            .contains("通常の負担割合"));
        assert!(connected(Line::Degraded, 2, 4).detail().contains("4件"));
    }

    #[test]
    fn icons_are_distinct_and_attention_marks_what_needs_staff() {
        let names: std::collections::HashSet<_> =
            Indicator::ALL.iter().map(|i| i.icon_name()).collect();
        assert_eq!(names.len(), Indicator::ALL.len());
        assert!(!Indicator::Online.needs_attention());
        assert!(!Indicator::Degraded.needs_attention());
        assert!(Indicator::Offline.needs_attention());
        assert!(Indicator::Overdue.needs_attention());
        assert!(Indicator::Unreachable.needs_attention());
    }

    #[test]
    fn status_json_is_read_leniently() {
        // It ignores fields it does not use and takes an unknown line state as degraded.
        let s: Summary = serde_json::from_str(
            r#"{"line":"offline","queue":4,"overdue":1,"last_pass":{"examined":4,"resolved":1,
                "needs_staff":0,"failed":3,"backing_off":0,"left_for_later":0},
                "readers":[],"pid":7,"updated_at":"2026-01-01T00:00:00+09:00"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.line, Line::Offline);
        assert_eq!(s.last_pass.map(|p| p.failed), Some(3));
        let s: Summary = serde_json::from_str(r#"{"line":"sideways","queue":0,"overdue":0}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.line, Line::Unknown);
        assert_eq!(s.indicator(), Indicator::Degraded);
    }

    #[test]
    fn notices_mark_the_changes_that_matter() {
        let online = connected(Line::Online, 0, 0);
        let degraded = connected(Line::Degraded, 0, 0);
        let offline = connected(Line::Offline, 2, 0);
        let overdue = connected(Line::Online, 2, 1);
        let more_overdue = connected(Line::Online, 3, 2);
        let lost = unreachable("動いていません。");

        // It announces going offline, in Japanese, with the counts.
        let n = notice(&online, &offline).unwrap_or_else(|| panic!("no notice"));
        assert!(n.summary.contains("オフライン"), "{n:?}");
        assert!(n.body.contains("事後確認待ち 2件"), "{n:?}");
        assert_eq!(n.indicator, Indicator::Offline);
        // It announces coming back.
        let n = notice(&offline, &online).unwrap_or_else(|| panic!("no notice"));
        assert!(n.summary.contains("つながりました"), "{n:?}");
        // It announces overdue checks appearing and growing, not shrinking.
        assert!(notice(&online, &overdue).is_some());
        assert!(notice(&overdue, &more_overdue).is_some());
        assert!(notice(&more_overdue, &overdue).is_none());
        // It stays quiet on online ↔ degraded and on queue changes.
        assert!(notice(&online, &degraded).is_none());
        assert!(notice(&degraded, &online).is_none());
        assert!(notice(&online, &connected(Line::Online, 9, 0)).is_none());
        // It announces losing and finding tsunagid, once.
        let n = notice(&online, &lost).unwrap_or_else(|| panic!("no notice"));
        assert_eq!(n.summary, UNREACHABLE_JA);
        assert!(notice(&lost, &lost).is_none());
        assert!(notice(&lost, &unreachable("別の理由。")).is_some());
        let n = notice(&lost, &online).unwrap_or_else(|| panic!("no notice"));
        assert!(n.summary.starts_with("tsunagid に接続しました"), "{n:?}");
        assert!(notice(&Link::Connecting, &online).is_some());
        assert!(notice(&online, &Link::Connecting).is_none());
    }

    #[test]
    fn the_status_notice_includes_the_last_pass() {
        let link = Link::Connected(Summary {
            line: Line::Online,
            queue: 1,
            overdue: 0,
            last_pass: Some(PassCounts {
                examined: 3,
                resolved: 2,
                needs_staff: 1,
                failed: 0,
            }),
        });
        let n = Notice::status(&link);
        assert_eq!(n.summary, "オンライン — 事後確認待ち 1件");
        assert!(n.body.contains("対象 3件: 確定 2件、要対応 1件"), "{n:?}");
    }
}
