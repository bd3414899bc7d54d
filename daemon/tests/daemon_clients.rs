//! The CLI as a client of a running `tsunagid`, through the real parts: the `tsunagi` and
//! `tsunagid` binaries Cargo built, the machine's pcscd with the virtual card in vpcd slot 0,
//! and the simulator from `tests/oqs-sim` over HTTP.
//!
//! - Same output either way: every staff command prints the same text and exits with the same
//!   code whether it opened the store itself or went through the daemon's API.
//! - Reception is not held back by a slow 事後確認 drain running in the same daemon.
//! - The event stream tells a client about a capture and its later answer, and ends when the
//!   daemon stops.
//!
//! pcscd is one per machine, so every test takes the harness's exclusive session first.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/tsunagid.rs"]
mod tsunagid;

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{runtime, scenario, today};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oqs_sim::{FaultMode, SimHandle, Simulator};
use serde_json::{json, Value};
use tsunagi_vcard::card::VirtualCard;
use tsunagi_vcard::harness::{self, PcscdSession};
use tsunagi_vcard::vpcd::{AttachOptions, AttachedCard};

use tsunagid::Tsunagid;

/// No `tsunagi` run in these tests may take longer (a hang fails the test, it does not stall
/// the suite).
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn institution() -> &'static str {
    &scenario().institution_code
}

/// One test's world: pcscd held, a simulator running, a valid card on slot 0.
struct World {
    sim: SimHandle,
    _card: AttachedCard,
    _pcscd: PcscdSession,
}

/// Where a `tsunagi` run is pointed.
enum Via<'a> {
    /// `TSUNAGI_CONFIG` only: the daemon of that file when it runs, else its data directory.
    Config(&'a Path),
    /// A configuration file that does not exist, and `TSUNAGI_DATA_DIR`.
    DataDir(&'a Path, &'a Path),
}

impl World {
    fn new() -> Self {
        let pcscd = harness::pcscd().expect("pcscd harness");
        let sim = runtime()
            .block_on(Simulator::start(scenario().sim_config()))
            .expect("simulator");
        let profile = scenario()
            .card("valid-employee")
            .expect("card in scenario")
            .clone();
        let card = harness::insert(VirtualCard::new(profile), 0, AttachOptions::default())
            .expect("insert card into vpcd slot 0");
        Self {
            sim,
            _card: card,
            _pcscd: pcscd,
        }
    }

    fn tsunagi(&self, via: &Via<'_>, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsunagi"));
        cmd.args(args)
            .env("TSUNAGI_OQS_URL", self.sim.base_url())
            .env("TSUNAGI_INSTITUTION_CODE", institution())
            .env("TSUNAGI_OQS_TIMEOUT_MS", "1500")
            .env_remove("TSUNAGI_DATA_DIR")
            .env_remove("TSUNAGI_LOG")
            .env_remove("TSUNAGI_FACILITY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match via {
            Via::Config(config) => {
                cmd.env("TSUNAGI_CONFIG", config);
            }
            Via::DataDir(missing_config, dir) => {
                cmd.env("TSUNAGI_CONFIG", missing_config)
                    .env("TSUNAGI_DATA_DIR", dir);
            }
        }
        run(cmd, args)
    }

    /// `tsunagi check --method visual` on slot 0, text output.
    fn check(&self, via: &Via<'_>) -> Run {
        let reader = harness::reader_name(0);
        self.tsunagi(
            via,
            &[
                "check",
                "--method",
                "visual",
                "--reader",
                reader.as_str(),
                "--card-wait",
                "10",
            ],
        )
    }
}

struct Run {
    args: String,
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tsunagi {}\nexit {} after {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.args, self.code, self.took, self.stdout, self.stderr
        )
    }
}

fn run(mut cmd: Command, args: &[&str]) -> Run {
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn tsunagi");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait tsunagi") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tsunagi {} still ran after {RUN_LIMIT:?}; stdout so far:\n{}",
                args.join(" "),
                out_reader.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    Run {
        args: args.join(" "),
        code: status.code().unwrap_or(-1),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        took,
    }
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"))
}

/// The id in `…（確認ID: <id>）…`.
fn id_in(run: &Run) -> String {
    run.stdout
        .split("確認ID: ")
        .nth(1)
        .and_then(|rest| rest.split('）').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no 確認ID in the output: {run:?}"))
}

fn never_in_use(what: &str, text: &str) {
    assert!(
        !text.contains("使用中"),
        "{what}: the store was reported in use:\n{text}"
    );
}

// ----- normalising what must differ -----

/// Replaces each known id by its placeholder and every RFC 3339 timestamp by `<TS>`;
/// nothing else is touched.
fn normalise(text: &str, ids: &[(&str, &str)]) -> String {
    let mut s = text.to_string();
    for (id, placeholder) in ids {
        s = s.replace(id, placeholder);
    }
    scrub_timestamps(&s)
}

/// `YYYY-MM-DDTHH:MM:SS` with any fraction and offset (`Z`, `+09:00`) becomes `<TS>`.
fn scrub_timestamps(s: &str) -> String {
    let b = s.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd";
    let fits = |at: usize| {
        at + shape.len() <= b.len()
            && shape.iter().zip(&b[at..]).all(|(p, c)| match p {
                b'd' => c.is_ascii_digit(),
                p => p == c,
            })
    };
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if !fits(i) {
            out.push(b[i]);
            i += 1;
            continue;
        }
        i += shape.len();
        if b.get(i) == Some(&b'.') {
            i += 1;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if b.get(i) == Some(&b'Z') {
            i += 1;
        } else if matches!(b.get(i), Some(b'+' | b'-'))
            && b.len() >= i + 6
            && b[i + 1..i + 3].iter().all(u8::is_ascii_digit)
            && b[i + 3] == b':'
            && b[i + 4..i + 6].iter().all(u8::is_ascii_digit)
        {
            i += 6;
        }
        out.extend_from_slice(b"<TS>");
    }
    String::from_utf8(out).expect("only ASCII was replaced")
}

/// The differences found between direct and daemon runs, reported together at the end.
#[derive(Default)]
struct Differences(Vec<String>);

impl Differences {
    fn text(&mut self, what: &str, direct: &str, daemon: &str) {
        if direct != daemon {
            self.0.push(format!(
                "{what}: output differs\n--- direct ---\n{direct}\n--- through tsunagid ---\n{daemon}"
            ));
        }
    }

    fn code(&mut self, what: &str, direct: &Run, daemon: &Run) {
        if direct.code != daemon.code {
            self.0.push(format!(
                "{what}: exit code differs (direct {}, through tsunagid {})\n--- direct ---\n{direct:?}\n--- through tsunagid ---\n{daemon:?}",
                direct.code, daemon.code
            ));
        }
    }

    /// Same exit code and the same stdout once ids and timestamps are normalised.
    fn runs(&mut self, what: &str, direct: &Run, daemon: &Run, ids: (&IdMap, &IdMap)) {
        self.code(what, direct, daemon);
        self.text(
            what,
            &normalise(&direct.stdout, &ids.0.pairs()),
            &normalise(&daemon.stdout, &ids.1.pairs()),
        );
    }

    fn assert_none(&self) {
        assert!(
            self.0.is_empty(),
            "{} difference(s) between direct and daemon mode:\n\n{}",
            self.0.len(),
            self.0.join("\n\n")
        );
    }
}

/// The ids of one side, with the placeholders they stand for.
struct IdMap {
    check: String,
    document: String,
}

impl IdMap {
    fn pairs(&self) -> [(&str, &str); 2] {
        [
            (self.check.as_str(), "<CHECK>"),
            (self.document.as_str(), "<DOCUMENT>"),
        ]
    }
}

/// The pending list's line for `id`.
fn line_of<'a>(run: &'a Run, id: &str) -> Option<&'a str> {
    run.stdout.lines().find(|l| l.contains(id))
}

/// The pending list's JSON entry for `id`, with its id as the placeholder.
fn entry_of(run: &Run, id: &str, ids: &IdMap) -> Option<String> {
    json_of(run)
        .as_array()
        .expect("pending --json is an array")
        .iter()
        .find(|c| c["id"] == id)
        .map(|c| normalise(&c.to_string(), &ids.pairs()))
}

/// The staff commands of one side, in order, with what they printed.
struct Session {
    check: Run,
    document: Run,
    pending: Run,
    pending_json: Run,
    show: Run,
    show_json: Run,
    declare: Run,
    ids: IdMap,
}

fn staff_session(w: &World, via: &Via<'_>, label: &str) -> Session {
    let check = w.check(via);
    assert_eq!(
        check.code, 3,
        "{label}: offline check is captured: {check:?}"
    );
    let check_id = id_in(&check);
    let expires = (today() + chrono::Days::new(90)).to_string();
    let document = w.tsunagi(
        via,
        &[
            "record-document",
            "kakuninsho",
            "--expires",
            &expires,
            "--insurer",
            "06139917",
            "--symbol",
            "1",
            "--number",
            "2",
            "--birth-date",
            "1980-01-01",
        ],
    );
    assert_eq!(document.code, 0, "{label}: {document:?}");
    let document_id = id_in(&document);
    let pending = w.tsunagi(via, &["pending"]);
    let pending_json = w.tsunagi(via, &["pending", "--json"]);
    let show = w.tsunagi(via, &["show", &check_id]);
    let show_json = w.tsunagi(via, &["show", &check_id, "--json"]);
    let declare = w.tsunagi(
        via,
        &[
            "declare",
            &check_id,
            "--name",
            "申立　花子",
            "--birth-date",
            "1990-01-02",
            "--sex",
            "female",
        ],
    );
    for r in [
        &check,
        &document,
        &pending,
        &pending_json,
        &show,
        &show_json,
        &declare,
    ] {
        never_in_use(label, &format!("{}{}", r.stdout, r.stderr));
    }
    Session {
        check,
        document,
        pending,
        pending_json,
        show,
        show_json,
        declare,
        ids: IdMap {
            check: check_id,
            document: document_id,
        },
    }
}

/// Polls `GET /v1/status` until `ok` holds; returns the last status.
fn wait_status(d: &Tsunagid, what: &str, limit: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (code, status) = d.get("/v1/status");
        assert_eq!(code, 200, "{status}");
        if ok(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "tsunagid never reported {what} within {limit:?}: {status}\nlog:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pending_count(d: &Tsunagid) -> usize {
    let (code, list) = d.get("/v1/checks?state=pending");
    assert_eq!(code, 200, "{list}");
    list["checks"].as_array().expect("checks").len()
}

// ----- 1. same output either way -----

#[test]
fn same_output_direct_and_through_tsunagid() {
    let w = World::new();
    let dir = tempfile::tempdir().unwrap();
    let data = tsunagid::data_dir_of(dir.path());
    // The configuration of a daemon that has never run: no token yet, so direct mode on its
    // data directory.
    let config = dir.path().join("tsunagi.toml");
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], tsunagid::free_port()));
    std::fs::write(
        &config,
        tsunagid::config_text(&data, &w.sim.base_url(), institution(), listen, ""),
    )
    .unwrap();
    let direct_via = Via::Config(&config);

    w.sim.faults().set_mode(FaultMode::Refuse);
    let direct = staff_session(&w, &direct_via, "direct");
    assert!(
        data.join("api.token").metadata().is_err(),
        "direct mode made no token"
    );
    // Online, both ways: a confirmed answer. Direct, in a data directory of its own: a
    // confirmed answer in this one would teach the clinic the patient, and the daemon's
    // captures below would rightly say so (the patient history), unlike the direct ones.
    w.sim.faults().clear();
    let elsewhere = tempfile::tempdir().unwrap();
    let missing = elsewhere.path().join("none.toml");
    let direct_online = w.check(&Via::DataDir(&missing, elsewhere.path()));
    assert_eq!(direct_online.code, 0, "{direct_online:?}");

    // The daemon on the same data directory. Its timer pass would ask about the new
    // captures between the commands (adding attempts to `show`); only the start-up pass
    // runs, before they exist.
    w.sim.faults().set_mode(FaultMode::Refuse);
    let d = Tsunagid::start_in(
        dir,
        &w.sim.base_url(),
        institution(),
        "[reconcile]\ninterval_secs = 3600\n",
    );
    let daemon_via = Via::Config(&d.config);
    let daemon = staff_session(&w, &daemon_via, "through tsunagid");
    w.sim.faults().clear();
    wait_status(&d, "the line back online", Duration::from_secs(20), |s| {
        s["line"] == "online"
    });
    let daemon_online = w.check(&daemon_via);
    assert_eq!(
        daemon_online.code, 0,
        "a confirmed answer through tsunagid exits 0: {daemon_online:?}"
    );
    assert!(
        daemon_online.stdout.contains("資格確認結果: 有効"),
        "{daemon_online:?}"
    );
    // Really through the daemon: the reception check is in its log, and no CLI opened the
    // store it holds.
    let log = d.log_text();
    assert!(log.contains("reception check done"), "daemon log:\n{log}");
    never_in_use("tsunagid log", &log);

    let ids = (&direct.ids, &daemon.ids);
    let mut diff = Differences::default();
    diff.runs("check (offline)", &direct.check, &daemon.check, ids);
    diff.runs(
        "record-document kakuninsho",
        &direct.document,
        &daemon.document,
        ids,
    );
    diff.runs("show", &direct.show, &daemon.show, ids);
    diff.runs("show --json", &direct.show_json, &daemon.show_json, ids);
    diff.runs("declare", &direct.declare, &daemon.declare, ids);
    diff.runs("check (online)", &direct_online, &daemon_online, ids);

    // The pending lists grow: the daemon's holds the direct checks too. Compare the lines of
    // corresponding checks, and the counts.
    diff.code("pending", &direct.pending, &daemon.pending);
    diff.code("pending --json", &direct.pending_json, &daemon.pending_json);
    for (what, a, b) in [
        ("check", &direct.ids.check, &daemon.ids.check),
        ("document", &direct.ids.document, &daemon.ids.document),
    ] {
        let listed = |run: &Run, id: &str, ids: &IdMap| {
            let line = line_of(run, id)
                .unwrap_or_else(|| panic!("pending lists the {what} {id}: {run:?}"));
            normalise(line, &ids.pairs())
        };
        diff.text(
            &format!("pending: the {what}'s line"),
            &listed(&direct.pending, a, &direct.ids),
            &listed(&daemon.pending, b, &daemon.ids),
        );
        let entry = |run: &Run, id: &str, ids: &IdMap| {
            entry_of(run, id, ids)
                .unwrap_or_else(|| panic!("pending --json lists the {what} {id}: {run:?}"))
        };
        diff.text(
            &format!("pending --json: the {what}'s entry"),
            &entry(&direct.pending_json, a, &direct.ids),
            &entry(&daemon.pending_json, b, &daemon.ids),
        );
    }
    let direct_count = json_of(&direct.pending_json).as_array().unwrap().len();
    let daemon_list = json_of(&daemon.pending_json);
    let daemon_list = daemon_list.as_array().unwrap();
    assert_eq!(direct_count, 2, "{:?}", direct.pending_json);
    for id in [&direct.ids.check, &direct.ids.document] {
        assert!(
            daemon_list.iter().any(|c| c["id"] == **id),
            "the daemon lists the checks made directly before it started ({id}): {:?}",
            daemon.pending_json
        );
    }
    diff.text(
        "pending: the header",
        &format!("事後確認待ち: {direct_count}件"),
        direct.pending.stdout.lines().next().unwrap_or_default(),
    );
    diff.text(
        "pending: the header through tsunagid",
        &format!("事後確認待ち: {}件", daemon_list.len()),
        daemon.pending.stdout.lines().next().unwrap_or_default(),
    );
    // What was compared, for whoever reads the test's output.
    for r in [
        &direct.check,
        &direct.document,
        &direct.pending,
        &direct.show,
        &direct.show_json,
        &direct.declare,
        &direct_online,
    ] {
        println!(
            "$ tsunagi {} → exit {}\n{}",
            r.args,
            r.code,
            normalise(&r.stdout, &direct.ids.pairs())
        );
    }
    println!(
        "direct: check {:?}, document {:?}; through tsunagid: check {:?}, document {:?}",
        direct.check.took, direct.document.took, daemon.check.took, daemon.document.took
    );
    let status = d.stop();
    assert!(status.success(), "tsunagid exit on SIGTERM: {status:?}");
    diff.assert_none();
}

// ----- 2. reception is not delayed by reconcile -----

/// Checks captured before the daemon starts, for its first pass to drain.
const BACKLOG: usize = 24;
/// The simulator's delay on every answer while the backlog drains.
const DELAY: Duration = Duration::from_millis(1500);

#[test]
fn reception_is_not_held_back_by_a_slow_drain() {
    let w = World::new();
    let dir = tempfile::tempdir().unwrap();
    let data = tsunagid::data_dir_of(dir.path());
    let missing = dir.path().join("no-such.toml");
    let direct_via = Via::DataDir(&missing, &data);

    // A card's time at the desk with an instant answer: the baseline.
    let baseline = w.check(&direct_via);
    assert_eq!(baseline.code, 0, "{baseline:?}");
    let card_time = baseline.took;

    w.sim.faults().set_mode(FaultMode::Refuse);
    let capturing = Instant::now();
    for i in 0..BACKLOG {
        let r = w.check(&direct_via);
        assert_eq!(r.code, 3, "capture {i}: {r:?}");
        never_in_use("capture", &format!("{}{}", r.stdout, r.stderr));
    }
    println!(
        "captured {BACKLOG} checks offline in {:?}",
        capturing.elapsed()
    );

    // The line comes back, slowly: every answer takes DELAY.
    w.sim.faults().clear();
    w.sim.faults().set_delay(DELAY);
    let d = Tsunagid::start_in(
        dir,
        &w.sim.base_url(),
        institution(),
        "[oqs]\ntimeout_ms = 5000\n[reconcile]\ninterval_secs = 1\nconcurrency = 8\n",
    );
    let via = Via::Config(&d.config);
    let bound = DELAY * 3 + card_time;
    let mut figures = Vec::new();
    for i in 0..3 {
        let before = pending_count(&d);
        assert!(
            before > 0,
            "reception check {i}: the drain is already over, so this measures nothing"
        );
        let r = w.check(&via);
        let after = pending_count(&d);
        figures.push(format!(
            "reception check {i}: {:?} (pending {before} → {after})",
            r.took
        ));
        never_in_use("reception check", &format!("{}{}", r.stdout, r.stderr));
        assert_eq!(r.code, 0, "reception check {i} is confirmed: {r:?}");
        assert!(r.stdout.contains("資格確認結果: 有効"), "{r:?}");
        assert!(
            r.took < bound,
            "reception check {i} took {:?} while the drain ran (bound {bound:?} = 3 × {DELAY:?} + card time {card_time:?})\n{}",
            r.took,
            figures.join("\n")
        );
    }
    // The drain does finish.
    let drained = Instant::now();
    let deadline = drained + Duration::from_secs(60);
    while pending_count(&d) > 0 {
        assert!(
            Instant::now() < deadline,
            "the backlog never drained: {} pending\nlog:\n{}",
            pending_count(&d),
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("delay {DELAY:?}, card time (instant answer, direct) {card_time:?}, bound {bound:?}");
    for f in &figures {
        println!("{f}");
    }
    println!(
        "backlog drained {:?} after the last reception check",
        drained.elapsed()
    );
    never_in_use("tsunagid log", &d.log_text());
    let status = d.stop();
    assert!(status.success(), "tsunagid exit on SIGTERM: {status:?}");
}

// ----- 3. the event stream -----

/// What the stream reader thread sees.
#[derive(Debug)]
enum Seen {
    /// One SSE event: its name and data.
    Event(String, Value),
    /// The stream ended: how, and when.
    End(String, Instant),
}

/// Opens `GET /v1/events` over a raw HTTP/1.1 connection and returns once the response
/// head is read (the daemon has subscribed); a thread then sends each event, and the end.
fn open_events(d: &Tsunagid) -> mpsc::Receiver<Seen> {
    let mut stream = TcpStream::connect_timeout(&d.addr, Duration::from_secs(2)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    write!(
        stream,
        "GET /v1/events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        d.addr, d.token
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut chunked = false;
    let mut content_type = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        if let Some(v) = lower.strip_prefix("content-type:") {
            content_type = v.trim().to_string();
        }
    }
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sse = SseParser::default();
        let end = loop {
            match body_piece(&mut reader, chunked) {
                Ok(Some(bytes)) => {
                    for e in sse.feed(&bytes) {
                        let _ = tx.send(e);
                    }
                }
                Ok(None) => break "end of stream".to_string(),
                Err(e) => break format!("read error: {e}"),
            }
        };
        let _ = tx.send(Seen::End(end, Instant::now()));
    });
    rx
}

/// The next piece of the body: one chunk when chunked, else what arrived; `None` at the end.
fn body_piece(r: &mut BufReader<TcpStream>, chunked: bool) -> std::io::Result<Option<Vec<u8>>> {
    if !chunked {
        let got = r.fill_buf()?.to_vec();
        r.consume(got.len());
        return Ok((!got.is_empty()).then_some(got));
    }
    let mut size = String::new();
    if r.read_line(&mut size)? == 0 {
        return Ok(None);
    }
    let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
        .map_err(|e| std::io::Error::other(format!("chunk size {size:?}: {e}")))?;
    if size == 0 {
        return Ok(None);
    }
    let mut bytes = vec![0; size];
    r.read_exact(&mut bytes)?;
    let mut crlf = [0; 2];
    r.read_exact(&mut crlf)?;
    Ok(Some(bytes))
}

#[derive(Default)]
struct SseParser {
    pending: Vec<u8>,
    name: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<Seen> {
        self.pending.extend_from_slice(bytes);
        let mut seen = Vec::new();
        while let Some(at) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=at).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() || self.name.is_some() {
                    let data = self.data.join("\n");
                    let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                    let name = self.name.take().unwrap_or_else(|| "message".into());
                    seen.push(Seen::Event(name, value));
                    self.data.clear();
                }
            } else if let Some(v) = line.strip_prefix("event:") {
                self.name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                self.data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
            }
            // Comments (keep-alive) and other fields are skipped.
        }
        seen
    }
}

/// Waits for an event named `name` about `check`; everything seen meanwhile goes to `log`.
fn wait_event(
    rx: &mpsc::Receiver<Seen>,
    log: &mut Vec<String>,
    name: &str,
    check: &str,
    limit: Duration,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Seen::Event(n, data)) => {
                log.push(format!("{n} {data}"));
                if n == name && data["check_id"] == check {
                    assert_eq!(data["kind"], name, "data names its kind: {data}");
                    return data;
                }
            }
            Ok(Seen::End(how, _)) => {
                panic!(
                    "the stream ended ({how}) before `{name}` for {check}; seen:\n{}",
                    log.join("\n")
                )
            }
            Err(_) => panic!(
                "no `{name}` for {check} within {limit:?}; seen:\n{}",
                log.join("\n")
            ),
        }
    }
}

#[test]
fn event_stream_follows_a_capture_to_its_answer_and_ends_with_the_daemon() {
    let w = World::new();
    w.sim.faults().set_mode(FaultMode::Refuse);
    // Only the explicit pass below asks about the capture.
    let d = Tsunagid::start(
        &w.sim.base_url(),
        institution(),
        "[reconcile]\ninterval_secs = 3600\n",
    );
    let rx = open_events(&d);
    let mut log = Vec::new();

    let r = w.check(&Via::Config(&d.config));
    assert_eq!(r.code, 3, "captured through tsunagid: {r:?}");
    let id = id_in(&r);
    wait_event(
        &rx,
        &mut log,
        "check_captured",
        &id,
        Duration::from_secs(10),
    );

    w.sim.faults().clear();
    wait_status(&d, "the line back online", Duration::from_secs(20), |s| {
        s["line"] == "online"
    });
    let (code, report) = d.post("/v1/reconcile", &json!({"force": true}));
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["ran"], true, "{report}");
    assert_eq!(report["pass"]["resolved"], 1, "{report}");
    wait_event(
        &rx,
        &mut log,
        "check_answered",
        &id,
        Duration::from_secs(10),
    );
    wait_event(
        &rx,
        &mut log,
        "check_resolved",
        &id,
        Duration::from_secs(10),
    );
    let (code, view) = d.get(&format!("/v1/checks/{id}"));
    assert_eq!(code, 200, "{view}");
    assert_eq!(view["resolution"]["basis"], "current", "{view}");

    // SIGTERM: the stream ends, the daemon exits 0.
    let stopping = Instant::now();
    let status = d.stop();
    let stopped = stopping.elapsed();
    assert!(status.success(), "tsunagid exit on SIGTERM: {status:?}");
    assert!(
        stopped < Duration::from_secs(5),
        "stopped after {stopped:?}"
    );
    let ended = loop {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Seen::Event(n, data)) => log.push(format!("{n} {data}")),
            Ok(Seen::End(how, at)) => break (how, at.saturating_duration_since(stopping)),
            Err(_) => panic!(
                "the event stream was still open 5 s after SIGTERM; seen:\n{}",
                log.join("\n")
            ),
        }
    };
    assert_eq!(ended.0, "end of stream", "the stream ended cleanly");
    println!(
        "events seen:\n{}\nstream ended ({}) {:?} after SIGTERM; tsunagid exited {status} after {stopped:?}",
        log.join("\n"),
        ended.0,
        ended.1
    );
}

/// A client that lost the answer sends the same request again with the same `check_id`: the
/// daemon records one check, not two; an id that is not a ULID is refused before anything is
/// written.
#[test]
fn a_repeated_request_records_one_check() {
    // No simulator: recording a document needs no answer from the qualification system.
    let d = Tsunagid::start("http://127.0.0.1:9", institution(), "");
    let id = ulid::Ulid::new().to_string();
    let expires = (today() + chrono::Days::new(300)).to_string();
    let body = serde_json::json!({
        "kind": "kakuninsho",
        "expires": expires,
        "insurer": "06139917",
        "symbol": "1",
        "number": "2",
        "birth_date": "1980-01-01",
        "check_id": id,
    });
    for _ in 0..3 {
        let (status, reply) = d.post("/v1/documents", &body);
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["check_id"], Value::String(id.clone()), "{reply}");
    }
    let (status, list) = d.get("/v1/checks?state=all");
    assert_eq!(status, 200, "{list}");
    let checks = list["checks"].as_array().expect("a list");
    assert_eq!(checks.len(), 1, "{list}");
    assert_eq!(checks[0]["id"], Value::String(id), "{list}");
    let mut bad = body.clone();
    bad["check_id"] = Value::String("not-a-ulid".into());
    let (status, reply) = d.post("/v1/documents", &bad);
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["field"], "check_id", "{reply}");
    let (_, list) = d.get("/v1/checks?state=all");
    assert_eq!(list["checks"].as_array().map(Vec::len), Some(1), "{list}");
}

/// A requester that goes away mid-check (Ctrl-C, a page that times out) does not cut the
/// check in half: tsunagid finishes the card session, records the check with its answer,
/// and lets go of the reader. A request repeated with the same `check_id` is answered from
/// the record, without reading the card again.
#[test]
fn a_check_whose_requester_leaves_is_finished_and_a_repeat_is_answered_from_the_record() {
    let w = World::new();
    let d = Tsunagid::start(
        &w.sim.base_url(),
        institution(),
        "[reconcile]\ninterval_secs = 3600\n[oqs]\ntimeout_ms = 5000\n",
    );
    wait_status(&d, "the line online", Duration::from_secs(20), |s| {
        s["line"] == "online"
    });
    // Answers take a second; the requester gives up after 300 ms, while the query runs.
    w.sim.faults().set_delay(Duration::from_millis(1000));
    let id = ulid::Ulid::new().to_string();
    let body = json!({
        "method": "visual",
        "reader": harness::reader_name(0),
        "card_wait_secs": 10,
        "check_id": id,
    });
    let impatient = d
        .client()
        .post(d.url("/v1/checks"))
        .bearer_auth(&d.token)
        .timeout(Duration::from_millis(300))
        .json(&body);
    let gave_up = d.block_on(async move { impatient.send().await });
    assert!(gave_up.is_err(), "the requester timed out: {gave_up:?}");
    // The check is finished and recorded with its answer all the same.
    let deadline = Instant::now() + Duration::from_secs(15);
    let seen = loop {
        let (status, view) = d.get(&format!("/v1/checks/{id}"));
        if status == 200 && view["answer"]["status"] == "confirmed" {
            break view;
        }
        assert!(Instant::now() < deadline, "never recorded: {status} {view}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(seen["phase"], "done", "{seen}");
    w.sim.faults().clear();

    // The same request again: answered from the record; still one check.
    let searches = w.sim.request_count();
    let (status, report) = d.post("/v1/checks", &body);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "confirmed", "{report}");
    assert_eq!(report["check_id"], Value::String(id.clone()), "{report}");
    assert!(
        report["message_ja"]
            .as_str()
            .is_some_and(|m| m.contains("記録済み")),
        "{report}"
    );
    assert_eq!(
        w.sim.request_count(),
        searches,
        "the system was not asked again"
    );
    let (_, list) = d.get("/v1/checks?state=all");
    assert_eq!(list["checks"].as_array().map(Vec::len), Some(1), "{list}");

    // The reader was let go: a new check on it goes through.
    let (status, fresh) = d.post(
        "/v1/checks",
        &json!({"method": "visual", "reader": harness::reader_name(0), "card_wait_secs": 10}),
    );
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(fresh["status"], "confirmed", "{fresh}");
}

/// serde quotes the value it refuses; a PIN sent with the wrong type must not come back in
/// the problem document (the CLI prints `detail`, other clients log it).
#[test]
fn a_pin_of_the_wrong_type_is_never_echoed() {
    let d = Tsunagid::start("http://127.0.0.1:9", institution(), "");
    let (status, p) = d.post("/v1/checks", &json!({"method": "pin", "pin": 987_654}));
    assert_eq!(status, 400, "{p}");
    assert_eq!(p["field"], "pin", "{p}");
    assert!(!p.to_string().contains("987654"), "{p}");
    assert!(!d.log_text().contains("987654"));
}

/// While tsunagid is down, another program listens on its port: the CLI asks it to prove it
/// holds the token, it cannot, and the CLI stops without sending it the token or anything of
/// the check (a PIN would travel in the next request).
#[test]
fn a_program_squatting_on_the_port_gets_neither_the_token_nor_the_check() {
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let data = tsunagid::data_dir_of(dir.path());
    std::fs::create_dir_all(&data).unwrap();
    let token = "ab".repeat(32);
    std::fs::write(data.join("api.token"), &token).unwrap();
    let impostor = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = impostor.local_addr().unwrap();
    let config = dir.path().join("tsunagi.toml");
    std::fs::write(
        &config,
        tsunagid::config_text(&data, "http://127.0.0.1:9", institution(), listen, ""),
    )
    .unwrap();
    // It answers every request as tsunagid would, with a proof it cannot really make.
    let heard = Arc::new(Mutex::new(Vec::<u8>::new()));
    let ear = heard.clone();
    std::thread::spawn(move || {
        for stream in impostor.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 8192];
            let n = stream.read(&mut buf).unwrap_or(0);
            ear.lock().unwrap().extend_from_slice(&buf[..n]);
            let body = format!(r#"{{"service":"tsunagid","proof":"{}"}}"#, "00".repeat(32));
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let out = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .args(["check", "--method", "visual", "--card-wait", "1"])
        .env("TSUNAGI_CONFIG", &config)
        .env_remove("TSUNAGI_DATA_DIR")
        .env("TSUNAGI_INSTITUTION_CODE", institution())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tsunagid ではありません"), "{stderr}");
    let heard = String::from_utf8_lossy(&heard.lock().unwrap()).to_string();
    assert!(
        heard.contains("GET /v1/identity?nonce="),
        "it was asked: {heard}"
    );
    assert!(!heard.contains(&token), "the token was sent: {heard}");
    assert!(
        !heard.to_ascii_lowercase().contains("authorization"),
        "{heard}"
    );
    assert!(!heard.contains("/v1/checks"), "the check was sent: {heard}");
}

/// SIGTERM during a long reconcile pass: the checks being asked about are finished and
/// recorded, the rest are left for the next start — the daemon does not hold the shutdown
/// for the whole pass, and nothing is lost.
#[test]
fn shutdown_does_not_wait_for_the_whole_reconcile_pass() {
    let sim = runtime()
        .block_on(Simulator::start(scenario().sim_config()))
        .expect("simulator");
    let d = Tsunagid::start(
        &sim.base_url(),
        institution(),
        "[reconcile]\ninterval_secs = 3600\n[oqs]\ntimeout_ms = 8000\n",
    );
    const CHECKS: usize = 64;
    for i in 0..CHECKS {
        let (code, doc) = d.post(
            "/v1/documents",
            &json!({
                "kind": "kakuninsho",
                "visit_date": today(),
                "expires": today().checked_add_months(chrono::Months::new(6)).unwrap(),
                "insurer": "06139999", "symbol": "練馬12", "number": format!("{:07}", 9000 + i),
                "birth_date": "1980-04-01",
            }),
        );
        assert_eq!(code, 200, "{doc}");
        assert_eq!(doc["status"], "recorded", "{doc}");
    }
    assert_eq!(pending_count(&d), CHECKS);
    // Every answer now takes 3 s: the whole pass (8 at a time) would take about 24 s.
    sim.faults().set_delay(Duration::from_secs(3));
    let addr = d.addr;
    let token = d.token.clone();
    // The pass's own request, from another task; it may end with the daemon.
    let pass = runtime().spawn(async move {
        reqwest::Client::new()
            .post(format!("http://{addr}/v1/reconcile"))
            .bearer_auth(token)
            .json(&json!({"force": true}))
            .send()
            .await
    });
    std::thread::sleep(Duration::from_secs(1));
    let stopping = Instant::now();
    let (status, dir) = d.stop_keeping_dir();
    let took = stopping.elapsed();
    assert!(status.success(), "tsunagid exit: {status:?}");
    // The checks in flight (one answer each, 3 s) are finished; not 24 s of pass.
    assert!(took < Duration::from_secs(9), "stopped after {took:?}");
    let _ = runtime().block_on(pass);
    // Nothing lost: every check is there, decided or still open for the next start. (The
    // line stays down, so the restarted daemon's first pass decides nothing meanwhile.)
    sim.faults().set_delay(Duration::ZERO);
    sim.faults().set_mode(FaultMode::Refuse);
    let d = Tsunagid::start_in(
        dir,
        &sim.base_url(),
        institution(),
        "[reconcile]\ninterval_secs = 3600\n",
    );
    let (code, all) = d.get(&format!(
        "/v1/checks?state=all&month={}",
        &today().to_string()[..7]
    ));
    assert_eq!(code, 200, "{all}");
    assert_eq!(all["checks"].as_array().unwrap().len(), CHECKS, "{all}");
    let left = pending_count(&d);
    assert!(left > 0, "the pass was not cut short: all {CHECKS} decided");
    println!("stopped after {took:?}; {left} of {CHECKS} checks left for the next start");
}
