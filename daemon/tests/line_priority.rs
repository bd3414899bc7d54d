//! Reception checks go ahead of 事後確認 for the line (issue 9): with the qualification system
//! answering slowly and the background lane full, a reception query takes one answer's time,
//! and the background queries still waiting did not start before it finished.
//!
//! Against the real simulator over HTTP. Timing is asserted only as causality plus generous
//! bounds: a query the simulator holds for `DELAY` cannot finish less than `DELAY` after it
//! was sent, so a background query finishing less than `DELAY` after reception finished was
//! sent while reception was still in flight.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use oqs_sim::scenario::{self, Scenario};
use oqs_sim::{SimHandle, Simulator};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tsunagi::domain::{IdentityMethod, InsurerNumber};
use tsunagi::oqs::{Answer, CardQuery, InsuranceQuery, OqsClient, OqsConfig};

/// How long the simulator holds every answer.
const DELAY: Duration = Duration::from_millis(800);
/// Background slots; half the background queries the test starts.
const LIMIT: usize = 8;
/// Slack for the clock reads around an await (the test thread may be descheduled).
const SLACK: Duration = Duration::from_millis(50);

fn insurance_query(s: &Scenario, i: usize) -> InsuranceQuery {
    let key = s.insurance_of("valid-employee").unwrap();
    InsuranceQuery {
        visit_date: s.today,
        insurer: InsurerNumber::parse(&key.insurer.wire()).unwrap(),
        symbol: key.symbol.clone(),
        number: key.number.clone(),
        branch: key.branch.clone(),
        birth_date: key.birthdate,
        limit_consent: false,
        file_id: format!("background-{i}"),
    }
}

fn card_query(s: &Scenario) -> CardQuery {
    CardQuery {
        visit_date: s.today,
        method: IdentityMethod::Visual,
        certificate_der: s
            .card("valid-employee")
            .unwrap()
            .auth_certificate_der
            .clone(),
        challenge: None,
        signature: None,
        file_id: "reception-1".to_string(),
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A client whose session the keeper holds, and the keeper's stop switch and task.
struct Warm {
    client: OqsClient,
    stop: watch::Sender<bool>,
    keeper: JoinHandle<()>,
}

impl Warm {
    async fn stop(self, sim: SimHandle) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), self.keeper)
            .await
            .expect("keeper stops")
            .unwrap();
        sim.shutdown().await;
    }
}

/// The simulator and a client with its session kept warm.
async fn warm_client(s: &Scenario) -> (SimHandle, Warm) {
    let sim = Simulator::start(s.sim_config()).await.unwrap();
    let client = OqsClient::new(OqsConfig {
        base_url: sim.base_url(),
        institution_code: s.institution_code.clone(),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
    .with_background_limit(LIMIT);
    let (stop, stopped) = watch::channel(false);
    let keeper = tokio::spawn({
        let c = client.clone();
        async move { c.keep_session(stopped).await }
    });
    eventually("session kept warm", || client.session_age().is_some()).await;
    (
        sim,
        Warm {
            client,
            stop,
            keeper,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reception_goes_ahead_of_background_queries() {
    let s = scenario::standard(chrono::Utc::now().date_naive()).unwrap();
    let (sim, warm) = warm_client(&s).await;
    let client = warm.client.clone();
    let background = client.background();
    let logins = sim.login_count();
    sim.faults().set_delay(DELAY);

    // 事後確認 fills the line: 16 queries, of which only LIMIT may be sent at once.
    let mut tasks = JoinSet::new();
    for i in 0..2 * LIMIT {
        let b = background.clone();
        let q = insurance_query(&s, i);
        tasks.spawn(async move {
            let started = Instant::now();
            let r = b.query_by_insurance(&q).await;
            (i, started, Instant::now(), r)
        });
    }
    eventually("the first background queries reach the line", || {
        sim.request_count() == LIMIT as u64
    })
    .await;
    // Part way into their answers, a patient's card is checked at the desk.
    tokio::time::sleep(DELAY * 3 / 8).await;
    assert_eq!(
        sim.request_count(),
        LIMIT as u64,
        "more background queries on the line than the limit"
    );
    assert_eq!(background.background_in_flight(), LIMIT);

    let reception_started = Instant::now();
    let answer = client.query_by_card(&card_query(&s)).await;
    let reception_finished = Instant::now();
    let took = reception_finished - reception_started;
    assert!(matches!(answer, Ok(Answer::Confirmed { .. })), "{answer:?}");
    assert!(
        took < 2 * DELAY,
        "reception took {took:?}, more than one answer's time ({DELAY:?} each)"
    );
    assert!(
        took + SLACK >= DELAY,
        "the simulator did not hold the answer"
    );

    let mut earlier = Vec::new();
    let mut later = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, started, finished, r) = joined.unwrap();
        assert!(
            matches!(r, Ok(Answer::Confirmed { .. })),
            "background {i}: {r:?}"
        );
        assert!(started < reception_started, "background {i} began late");
        if finished < reception_finished {
            earlier.push((i, finished));
        } else {
            later.push((i, finished));
        }
    }
    // The queries already on the line when reception began finished during it; the ones still
    // waiting for a slot got one then, but held back until reception finished.
    assert_eq!(
        earlier.len(),
        LIMIT,
        "finished during reception: {earlier:?}"
    );
    assert_eq!(later.len(), LIMIT);
    for (i, finished) in later {
        let after = finished - reception_finished;
        assert!(
            after + SLACK >= DELAY,
            "background {i} finished {after:?} after reception, so it was sent before \
             reception finished"
        );
    }
    assert_eq!(sim.request_count(), 2 * LIMIT as u64 + 1);
    assert_eq!(
        sim.login_count(),
        logins,
        "a query logged in although the session was kept warm"
    );
    warm.stop(sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reception_queue_keeps_its_pace_and_background_drains() {
    // Three patients in a row at the desk while 事後確認 has three times more queued than it may
    // send: each check takes one answer's time, and afterwards every background query is
    // answered (none is left waiting for a wake-up that never came).
    let s = scenario::standard(chrono::Utc::now().date_naive()).unwrap();
    let (sim, warm) = warm_client(&s).await;
    let client = warm.client.clone();
    let background = client.background();
    let logins = sim.login_count();
    let answer_time = DELAY / 2;
    sim.faults().set_delay(answer_time);
    let mut tasks = JoinSet::new();
    for i in 0..3 * LIMIT {
        let b = background.clone();
        let q = insurance_query(&s, i);
        tasks.spawn(async move { b.query_by_insurance(&q).await });
    }
    eventually("the background lane is full", || {
        sim.request_count() == LIMIT as u64
    })
    .await;
    for patient in 0..3 {
        let started = Instant::now();
        let answer = client.query_by_card(&card_query(&s)).await;
        let took = started.elapsed();
        assert!(matches!(answer, Ok(Answer::Confirmed { .. })), "{answer:?}");
        assert!(
            took < 2 * answer_time,
            "patient {patient} waited {took:?} ({answer_time:?} per answer)"
        );
    }
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(r) = tasks.join_next().await {
            assert!(matches!(r.unwrap(), Ok(Answer::Confirmed { .. })));
        }
    })
    .await;
    assert!(drained.is_ok(), "background queries left waiting");
    assert_eq!(background.background_in_flight(), 0);
    assert_eq!(client.reception_in_flight(), 0);
    assert_eq!(sim.request_count(), 3 * LIMIT as u64 + 3);
    assert_eq!(sim.login_count(), logins);
    warm.stop(sim).await;
}
