//! Two hosts on one machine: network namespaces joined by veth links (Debian's iproute2, as
//! root), so a test can cut the network between two processes the way a tablet leaving the
//! clinic's Wi-Fi does — packets stop, nobody says goodbye — and mend it again.
//!
//! ```text
//!   test (root namespace)
//!     ├── 10.N.1.1 ── veth ── 10.N.1.2  namespace A   (A's API)
//!     └── 10.N.2.1 ── veth ── 10.N.2.2  namespace B   (B's API)
//!                  A 10.N.3.1 ── veth ── 10.N.3.2 B    (the link between them)
//! ```
//!
//! Each test's namespaces and subnet are named after its process id and a counter, and are
//! deleted on drop (deleting a namespace deletes the veths in it).
//!
//! Include with `#[path = "support/netns.rs"] mod netns;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Two namespaces, each reachable from the test, joined by one link.
pub struct TwoHosts {
    pub a: String,
    pub b: String,
    /// The link's end in A (cut and mended here).
    link_a: String,
    /// Addresses the test reaches A and B at.
    pub a_outside: Ipv4Addr,
    pub b_outside: Ipv4Addr,
    /// A's and B's addresses on the link between them.
    pub a_link: Ipv4Addr,
    pub b_link: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2; scripts/setup-system.sh installs it)");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TwoHosts {
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        // A /16 of 10.0.0.0/8 for this test, away from the 10.0.x networks hosts often use.
        let net = 100 + (std::process::id() * 7 + n) % 150;
        let hosts = TwoHosts {
            a: format!("tsu{tag}a"),
            b: format!("tsu{tag}b"),
            link_a: format!("tl{tag}a"),
            a_outside: Ipv4Addr::new(10, net as u8, 1, 2),
            b_outside: Ipv4Addr::new(10, net as u8, 2, 2),
            a_link: Ipv4Addr::new(10, net as u8, 3, 1),
            b_link: Ipv4Addr::new(10, net as u8, 3, 2),
        };
        let (a, b) = (hosts.a.as_str(), hosts.b.as_str());
        ip(&["netns", "add", a]);
        ip(&["netns", "add", b]);
        ip(&["-n", a, "link", "set", "lo", "up"]);
        ip(&["-n", b, "link", "set", "lo", "up"]);
        for (ns, k) in [(a, 1), (b, 2)] {
            let (outer, inner) = (format!("to{tag}{k}"), format!("in{tag}{k}"));
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", ns,
            ]);
            ip(&["addr", "add", &format!("10.{net}.{k}.1/30"), "dev", &outer]);
            ip(&["link", "set", &outer, "up"]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("10.{net}.{k}.2/30"),
                "dev",
                &inner,
            ]);
            ip(&["-n", ns, "link", "set", &inner, "up"]);
        }
        let link_b = format!("tl{tag}b");
        ip(&[
            "-n",
            a,
            "link",
            "add",
            &hosts.link_a,
            "type",
            "veth",
            "peer",
            "name",
            &link_b,
            "netns",
            b,
        ]);
        ip(&[
            "-n",
            a,
            "addr",
            "add",
            &format!("{}/30", hosts.a_link),
            "dev",
            &hosts.link_a,
        ]);
        ip(&[
            "-n",
            b,
            "addr",
            "add",
            &format!("{}/30", hosts.b_link),
            "dev",
            &link_b,
        ]);
        ip(&["-n", a, "link", "set", &hosts.link_a, "up"]);
        ip(&["-n", b, "link", "set", &link_b, "up"]);
        hosts
    }

    /// Cuts the link between A and B: from now on nothing crosses, and neither is told.
    pub fn cut(&self) {
        ip(&["-n", &self.a, "link", "set", &self.link_a, "down"]);
    }

    /// Mends the link.
    pub fn mend(&self) {
        ip(&["-n", &self.a, "link", "set", &self.link_a, "up"]);
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
