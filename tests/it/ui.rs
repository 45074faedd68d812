//! The report pages over HTTP: nothing under `/ui/` shows data without a sign-in, the forms
//! refuse a missing or wrong CSRF token, a wrong key is refused and then limited, signing out
//! clears the cookie and retires it, unknown ids get a 404 page, text is escaped, and the
//! finance CSV equals the ledger summary; a tenant's reader sees only its tenant's jobs. The browser test (tests/ui/) drives the same pages
//! in Chromium.

use std::time::Duration;

use herald_testkit::{contacts_csv, path_segment, sms_job, Gateway, KEY};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

fn no_redirects() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The `name=value` of cookie `name` among a response's `Set-Cookie` headers, and the
/// whole header.
fn set_cookie(r: &Response, name: &str) -> Option<(String, String)> {
    r.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let pair = v.split(';').next()?.trim();
        pair.starts_with(&format!("{name}="))
            .then(|| (pair.to_string(), v.to_string()))
    })
}

/// The value of the hidden field `name` in a page.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("the field") + marker.len();
    html[start..]
        .split('"')
        .next()
        .expect("a value")
        .to_string()
}

/// Opens the sign-in form: (its cookie pair, its CSRF token).
async fn open_form(g: &Gateway, http: &Client) -> (String, String) {
    let r = http.get(g.url("/ui/sign-in")).send().await.expect("form");
    assert_eq!(r.status(), 200);
    let (cookie, header) = set_cookie(&r, "herald_form").expect("a form cookie");
    assert!(header.contains("HttpOnly") && header.contains("SameSite=Strict"));
    let csrf = hidden(&r.text().await.expect("html"), "csrf");
    (cookie, csrf)
}

/// Posts the sign-in form with `key`, the form cookie `cookie` and `csrf`.
async fn post_sign_in(g: &Gateway, http: &Client, cookie: &str, csrf: &str, key: &str) -> Response {
    http.post(g.url("/ui/sign-in"))
        .header(COOKIE, cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={csrf}&next=%2Fui%2Ffinance&key={}",
            path_segment(key)
        ))
        .send()
        .await
        .expect("sign in")
}

/// Signs in with the test key: the sign-in cookie pair.
async fn sign_in(g: &Gateway, http: &Client) -> String {
    let (cookie, csrf) = open_form(g, http).await;
    let r = post_sign_in(g, http, &cookie, &csrf, KEY).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    set_cookie(&r, "herald_ui").expect("a sign-in cookie").0
}

async fn get(g: &Gateway, http: &Client, path: &str, cookie: Option<&str>) -> Response {
    let mut req = http.get(g.url(path));
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    req.send().await.expect("get")
}

/// A completed job of campaign `campaign` over `c0..c{n-1}` plus one unknown contact.
async fn finished_job(g: &Gateway, campaign: &str, n: usize) -> String {
    let mut contacts: Vec<Value> = (0..n)
        .map(|i| json!({"contact_id": format!("c{i}")}))
        .collect();
    contacts.push(json!({"contact_id": "ghost"}));
    let (s, body) = g
        .submit(&sms_job(campaign, "Sale today", Value::Array(contacts)))
        .await;
    assert_eq!(s, 201, "{body}");
    g.wait_completed(&body, Duration::from_secs(10)).await;
    body["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn nothing_under_ui_shows_data_without_a_sign_in() {
    let g = Gateway::start().await;
    g.load_csv(&contacts_csv(3)).await;
    let job = finished_job(&g, "spring", 3).await;
    let http = no_redirects();
    let forged = "herald_ui=1.9999999999.00112233aabbccdd.00000000000000000000000000000000.00";
    for path in [
        "/ui/".to_string(),
        "/ui/jobs".to_string(),
        format!("/ui/jobs/{job}"),
        "/ui/campaigns/spring".to_string(),
        "/ui/finance".to_string(),
        "/ui/finance/by-month.csv".to_string(),
        "/ui/anything".to_string(),
    ] {
        for cookie in [None, Some(forged)] {
            let r = get(&g, &http, &path, cookie).await;
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
            let to = r.headers()[LOCATION].to_str().unwrap().to_string();
            assert!(to.starts_with("/ui/sign-in?next="), "{path} → {to}");
            if cookie.is_some() {
                let (pair, _) = set_cookie(&r, "herald_ui").expect("the bad cookie is removed");
                assert_eq!(pair, "herald_ui=");
            }
            let body = r.text().await.unwrap();
            assert!(!body.contains(&job) && !body.contains("spring"), "{path}");
        }
    }
    // An API key as a bearer header is not a sign-in.
    let r = http
        .get(g.url("/ui/jobs"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // Signed in, the same pages show the job.
    let cookie = sign_in(&g, &http).await;
    let r = get(&g, &http, "/ui/jobs", Some(&cookie)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    assert!(r.text().await.unwrap().contains(&job));
    g.stop().await;
}

#[tokio::test]
async fn sign_in_refuses_a_bad_form_token_and_a_wrong_key() {
    let g = Gateway::start().await;
    let http = no_redirects();
    let (cookie, csrf) = open_form(&g, &http).await;
    // No form cookie, another token, no token: refused before the key is looked at.
    for (c, t) in [
        ("", csrf.as_str()),
        (cookie.as_str(), "00000000000000000000000000000000"),
        (cookie.as_str(), ""),
    ] {
        let r = post_sign_in(&g, &http, c, t, KEY).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(set_cookie(&r, "herald_ui").is_none());
    }
    let r = post_sign_in(&g, &http, &cookie, &csrf, "not-a-key").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&r, "herald_ui").is_none());
    assert!(r.text().await.unwrap().contains("may not read reports"));
    // The right key: back to the page asked for, with a cookie that does not hold the key.
    let r = post_sign_in(&g, &http, &cookie, &csrf, KEY).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/finance");
    let (pair, header) = set_cookie(&r, "herald_ui").expect("a sign-in cookie");
    assert!(!pair.contains(KEY), "{pair}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(header.contains(attr), "{attr} in {header}");
    }
    g.stop().await;
}

#[tokio::test]
async fn failed_sign_ins_are_limited() {
    let g = Gateway::start().await;
    let http = no_redirects();
    let (cookie, csrf) = open_form(&g, &http).await;
    for _ in 0..5 {
        let r = post_sign_in(&g, &http, &cookie, &csrf, "guess").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = post_sign_in(&g, &http, &cookie, &csrf, KEY).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert!(set_cookie(&r, "herald_ui").is_none());
    g.stop().await;
}

#[tokio::test]
async fn sign_out_needs_its_token_then_clears_and_retires_the_cookie() {
    let g = Gateway::start().await;
    let http = no_redirects();
    let cookie = sign_in(&g, &http).await;
    let page = get(&g, &http, "/ui/jobs", Some(&cookie)).await;
    let token = hidden(&page.text().await.unwrap(), "csrf");
    let sign_out = |csrf: String| {
        http.post(g.url("/ui/sign-out"))
            .header(COOKIE, &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}"))
            .send()
    };
    let r = sign_out("0".repeat(32)).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        get(&g, &http, "/ui/jobs", Some(&cookie)).await.status(),
        200
    );
    let r = sign_out(token).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/sign-in");
    let (pair, header) = set_cookie(&r, "herald_ui").expect("the cookie is cleared");
    assert_eq!(pair, "herald_ui=");
    assert!(header.contains("Max-Age=0"));
    // A copy of the old cookie no longer signs anyone in.
    let r = get(&g, &http, "/ui/jobs", Some(&cookie)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    g.stop().await;
}

#[tokio::test]
async fn unknown_ids_get_a_404_page_and_text_is_escaped() {
    let g = Gateway::start().await;
    g.load_csv(&contacts_csv(2)).await;
    let campaign = "<b>spring</b>\"&'";
    let job = finished_job(&g, campaign, 2).await;
    let http = no_redirects();
    let cookie = sign_in(&g, &http).await;
    for path in [
        "/ui/jobs/not-a-job".to_string(),
        format!("/ui/jobs/job_{}", "0".repeat(32)),
        "/ui/campaigns/autumn".to_string(),
        format!("/ui/campaigns/{}", "x".repeat(129)),
        "/ui/nowhere".to_string(),
    ] {
        let r = get(&g, &http, &path, Some(&cookie)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(r.text().await.unwrap().contains("No such"), "{path}");
    }
    for path in [
        format!("/ui/jobs/{job}"),
        format!("/ui/campaigns/{}", path_segment(campaign)),
        "/ui/jobs".to_string(),
    ] {
        let r = get(&g, &http, &path, Some(&cookie)).await;
        assert_eq!(r.status(), 200, "{path}");
        let html = r.text().await.unwrap();
        assert!(!html.contains("<b>spring"), "{path}: unescaped");
        assert!(
            html.contains("&#60;b&#62;spring") || html.contains("&lt;b&gt;spring"),
            "{path}"
        );
    }
    g.stop().await;
}

#[tokio::test]
async fn the_finance_csv_equals_the_ledger_summary_by_month() {
    let g = Gateway::start().await;
    g.load_csv(&contacts_csv(5)).await;
    finished_job(&g, "spring", 3).await;
    finished_job(&g, "autumn", 5).await;
    let http = no_redirects();
    let cookie = sign_in(&g, &http).await;
    let r = get(&g, &http, "/ui/finance/by-month.csv", Some(&cookie)).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let csv = r.text().await.unwrap();
    let summary = g.get_json("/v1/ledger/summary").await;
    let mut expected = vec!["month,currency,entries,parts,cost_micros".to_string()];
    let mut rows = Vec::new();
    for (currency, months) in summary["by_month"].as_object().expect("by_month") {
        for (month, t) in months.as_object().expect("months") {
            rows.push(format!(
                "{month},{currency},{},{},{}",
                t["entries"], t["parts"], t["cost_micros"]
            ));
        }
    }
    rows.sort();
    expected.extend(rows);
    assert_eq!(csv.lines().collect::<Vec<_>>(), expected);
    // One month here (the clock is pinned), holding every charge of both jobs.
    assert_eq!(expected.len(), 2, "{csv}");
    assert_eq!(
        summary["by_month"]["CNY"]["2026-11"], summary["totals"]["CNY"],
        "{summary:#}"
    );
    assert_eq!(summary["totals"]["CNY"]["entries"], 8);
    // The page shows the same total.
    let html = get(&g, &http, "/ui/finance", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    let micros = summary["totals"]["CNY"]["cost_micros"].as_i64().unwrap();
    let shown = herald::ui::format::money(micros);
    assert!(
        html.contains(&format!("data-metric=\"totals.CNY.cost_micros\">{shown}<")),
        "{shown} not on the page"
    );
    g.stop().await;
}

/// Makes a key for `tenant` with `scopes` through the API; answers its token.
async fn make_key(g: &Gateway, tenant: &str, scopes: &[&str]) -> String {
    let r = g
        .req(reqwest::Method::POST, "/v1/keys")
        .json(&json!({"name": "reader", "tenant": tenant, "scopes": scopes}))
        .send()
        .await
        .expect("make a key");
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.expect("json")["key"]
        .as_str()
        .expect("token")
        .to_string()
}

#[tokio::test]
async fn a_tenants_reader_signs_in_with_its_own_key_and_sees_only_its_jobs() {
    let g = Gateway::start().await;
    g.load_csv(&contacts_csv(3)).await;
    let installation_job = finished_job(&g, "spring", 2).await;
    let reader = make_key(&g, "acme", &["reports:read", "jobs:write"]).await;
    let job = sms_job("acme-sale", "Sale", json!([{"contact_id": "c1"}]));
    let r = reqwest::Client::new()
        .post(g.url("/v1/jobs"))
        .bearer_auth(&reader)
        .json(&job)
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status(), 201);
    let acme_job = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();

    // A key without reports:read may not sign in.
    let http = no_redirects();
    let writer = make_key(&g, "acme", &["jobs:write"]).await;
    let (cookie, csrf) = open_form(&g, &http).await;
    let r = post_sign_in(&g, &http, &cookie, &csrf, &writer).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let (cookie, csrf) = open_form(&g, &http).await;
    let r = post_sign_in(&g, &http, &cookie, &csrf, &reader).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let signed_in = set_cookie(&r, "herald_ui").expect("a sign-in cookie").0;
    let list = get(&g, &http, "/ui/jobs", Some(&signed_in)).await;
    assert_eq!(list.status(), 200);
    let html = list.text().await.expect("html");
    assert!(html.contains(&acme_job), "its own job is listed");
    assert!(!html.contains(&installation_job), "another tenant's is not");
    let r = get(
        &g,
        &http,
        &format!("/ui/jobs/{installation_job}"),
        Some(&signed_in),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = get(&g, &http, &format!("/ui/jobs/{acme_job}"), Some(&signed_in)).await;
    assert_eq!(r.status(), 200);
    // The ledger needs ledger:read.
    let r = get(&g, &http, "/ui/finance", Some(&signed_in)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Revoking the key signs its reader out at the next page.
    let keys = g.get_json("/v1/keys").await["keys"]
        .as_array()
        .expect("keys")
        .clone();
    let id = keys
        .iter()
        .find(|k| reader.contains(k["id"].as_str().unwrap_or("-")))
        .and_then(|k| k["id"].as_str())
        .expect("the reader's key")
        .to_string();
    let r = g
        .req(reqwest::Method::DELETE, &format!("/v1/keys/{id}"))
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    let r = get(&g, &http, "/ui/jobs", Some(&signed_in)).await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "back to the sign-in form"
    );
    g.stop().await;
}
