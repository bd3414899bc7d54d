//! The reception page without a browser: signing in with a one-time code and sending page
//! requests with the session cookie (and an `Origin`, for writes), never following redirects.
//!
//! Include after `support/tsunagid.rs` as `mod tsunagid;`:
//! `#[path = "support/page.rs"] mod page;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use serde_json::{json, Value};

use crate::tsunagid::{Reply, Tsunagid};

/// Signs in without a browser: spends a fresh code and returns the `Cookie` header value.
pub fn session_cookie(d: &Tsunagid) -> String {
    let (code, answer) = d.post("/v1/page/codes", &json!({}));
    assert_eq!(code, 200, "{answer}");
    let url = answer["url"].as_str().expect("url").to_string();
    let r = send_no_redirect(d, d.client().get(url));
    assert_eq!(r.status, 303, "sign-in redirects: {}", r.text());
    let set = r.header("set-cookie").expect("a session cookie");
    set.split(';').next().unwrap().trim().to_string()
}

/// Sends without following redirects (the harness's client follows them).
pub fn send_no_redirect(d: &Tsunagid, req: reqwest::RequestBuilder) -> Reply {
    let (client, request) = req.build_split();
    let request = request.unwrap();
    let plain = d.block_on(async {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    });
    drop(client);
    d.block_on(async move { Reply::read(plain.execute(request).await.unwrap()).await })
}

/// A request to the page's routes with the given cookie, `Origin` and JSON body.
pub fn page_request(
    d: &Tsunagid,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = d.client().request(method, d.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&b).unwrap());
    }
    send_no_redirect(d, req)
}

/// A check started the way the page starts one (its session, its own origin).
pub fn page_check(d: &Tsunagid, cookie: &str, body: Value) -> Reply {
    let origin = format!("http://{}", d.addr);
    page_request(
        d,
        "POST",
        "/page/api/checks",
        Some(cookie),
        Some(&origin),
        Some(body),
    )
}
