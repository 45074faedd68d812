//! The report pages in a real browser: headless Chromium driven by chromedriver over
//! WebDriver. A gateway runs an A/B job to completion with the sandbox provider and clicks
//! come back through tracked links; the browser is refused the job's page before signing in,
//! signs in through the form, and the numbers the page shows must equal the JSON report's.
//! Screenshots at 1280 px and 375 px are written to `target/ui-screenshots/`; at 375 px the
//! body must not scroll sideways. Signing out leaves the page refused again.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); without them
//! the test fails saying so.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use herald_testkit::{contacts_csv, Gateway, KEY};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free loopback port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    for path in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: the browser test needs Debian's chromium and chromium-driver, \
             which .ci/run installs (apt-get install chromium chromium-driver)"
        );
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    loop {
        let up = reqwest::get(format!("{}/status", driver.url))
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            return driver;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not answer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn browser(driver: &Driver) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900",
                     "--hide-scrollbars", "--force-device-scale-factor=1"],
        },
    });
    let caps = match caps {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser")
}

/// A finished A/B job over 60 contacts and one unknown contact, with clicks planted over
/// several minutes: (job id, its JSON report).
async fn demo_job(g: &Gateway) -> (String, Value) {
    g.load_csv(&contacts_csv(60)).await;
    let mut contacts: Vec<Value> = (0..60)
        .map(|i| json!({"contact_id": format!("c{i}")}))
        .collect();
    contacts.push(json!({"contact_id": "ghost"}));
    let (s, body) = g
        .submit(&json!({
            "campaign_id": "spring-sale",
            "channel": "sms",
            "purpose": "marketing",
            "variants": [
                {"name": "short", "weight": 1, "template": {"body": "Spring sale: 20% off today https://shop.example/s"}},
                {"name": "long", "weight": 1, "template": {"body": "Hello {{first_name}}, our spring sale is on: 20% off everything until Sunday https://shop.example/l"}},
            ],
            "holdout": 0.1,
            "audience": {"contacts": contacts},
        }))
        .await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    g.wait_status(&id, "completed", Duration::from_secs(20))
        .await;
    // Clicks from the "short" variant's recipients mostly, one a minute after the send.
    let lines = g.recipients(&id).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let start = herald_testkit::noon_shanghai();
    let mut minute = 0;
    for (i, l) in lines.iter().enumerate() {
        let clicks = match l["variant"].as_str() {
            Some("short") if i % 2 == 0 => true,
            Some("long") if i % 5 == 0 => true,
            _ => false,
        };
        if l["outcome"] != "sent" || !clicks {
            continue;
        }
        minute += 1;
        g.clock
            .set(start + chrono::Duration::minutes(1 + minute % 6));
        let r = http
            .get(g.url(&format!("/c/{}", g.token(&id, i as u32, 0))))
            .send()
            .await
            .expect("click");
        assert!(r.status().is_redirection(), "{}", r.status());
    }
    let report = g.get_json(&format!("/v1/jobs/{id}/report")).await;
    (id, report)
}

/// The text of the element whose `data-metric` is `metric`.
async fn shown(c: &Client, metric: &str) -> String {
    c.find(Locator::Css(&format!("[data-metric=\"{metric}\"]")))
        .await
        .unwrap_or_else(|e| panic!("{metric} is not on the page: {e}"))
        .text()
        .await
        .expect("text")
}

fn money(micros: &Value) -> String {
    herald::ui::format::money(micros.as_i64().expect("micros"))
}

fn percent(rate: &Value) -> String {
    herald::ui::format::percent(rate.as_f64())
}

/// Every figure of the report the page shows, against the report.
async fn assert_page_equals_report(c: &Client, r: &Value) {
    let f = &r["funnel"];
    for (metric, v) in [
        ("funnel.audience", &f["audience"]),
        ("funnel.rejected.total", &f["rejected"]["total"]),
        ("funnel.sent", &f["sent"]),
        ("funnel.delivered", &f["delivered"]),
        (
            "funnel.opened.unique_contacts",
            &f["opened"]["unique_contacts"],
        ),
        (
            "funnel.clicked.unique_contacts",
            &f["clicked"]["unique_contacts"],
        ),
        ("funnel.clicked.total", &f["clicked"]["total"]),
        ("funnel.opted_out_after_send", &f["opted_out_after_send"]),
        ("funnel.failed", &f["failed"]),
        ("funnel.undelivered", &f["undelivered"]),
    ] {
        assert_eq!(shown(c, metric).await, v.to_string(), "{metric}");
    }
    for (reason, n) in f["rejected"]["by_reason"].as_object().expect("reasons") {
        let metric = format!("funnel.rejected.by_reason.{reason}");
        assert_eq!(shown(c, &metric).await, n.to_string(), "{metric}");
    }
    for (name, rate) in r["rates"].as_object().expect("rates") {
        assert_eq!(
            shown(c, &format!("rates.{name}")).await,
            percent(rate),
            "{name}"
        );
    }
    for (currency, micros) in r["cost"]["total_micros"].as_object().expect("totals") {
        let metric = format!("cost.total_micros.{currency}");
        assert_eq!(shown(c, &metric).await, money(micros), "{metric}");
    }
    for dim in ["by_channel", "by_provider", "by_country"] {
        for l in r["cost"][dim].as_array().expect("cost lines") {
            let m = format!(
                "cost.{dim}.{}.{}",
                l["key"].as_str().unwrap(),
                l["currency"].as_str().unwrap()
            );
            assert_eq!(
                shown(c, &format!("{m}.messages")).await,
                l["messages"].to_string()
            );
            assert_eq!(
                shown(c, &format!("{m}.parts")).await,
                l["parts"].to_string()
            );
            assert_eq!(
                shown(c, &format!("{m}.cost_micros")).await,
                money(&l["cost_micros"])
            );
        }
    }
    for p in r["series"].as_array().expect("series") {
        let minute = p["minute"].as_str().unwrap();
        for what in ["sent", "delivered", "clicked"] {
            let metric = format!("series.{minute}.{what}");
            // The per-minute table sits in a closed <details>: read its text content.
            let el = c
                .find(Locator::Css(&format!("[data-metric=\"{metric}\"]")))
                .await
                .expect(&metric);
            let text = el
                .prop("textContent")
                .await
                .expect("text")
                .unwrap_or_default();
            assert_eq!(text, p[what].to_string(), "{metric}");
        }
    }
    let v = &r["variants"];
    for line in v["variants"].as_array().expect("variants") {
        let name = line["name"].as_str().unwrap();
        for what in ["assigned", "sent", "delivered", "clicked", "opted_out"] {
            let metric = format!("variant.{name}.{what}");
            assert_eq!(shown(c, &metric).await, line[what].to_string(), "{metric}");
        }
        assert_eq!(
            shown(c, &format!("variant.{name}.cost_micros")).await,
            money(&line["cost_micros"])
        );
        assert_eq!(
            shown(c, &format!("variant.{name}.click_rate")).await,
            percent(&line["click_rate"])
        );
        let vs = &line["click_rate_vs_best"];
        let diff = shown(c, &format!("variant.{name}.click_rate_vs_best.difference")).await;
        let ci = shown(c, &format!("variant.{name}.click_rate_vs_best.ci95")).await;
        if vs.is_null() {
            assert_eq!((diff.as_str(), ci.as_str()), ("best", "best"));
        } else {
            let f = |k: &str| vs[k].as_f64().unwrap();
            assert_eq!(diff, herald::ui::format::points(f("difference")));
            assert_eq!(
                ci,
                herald::ui::format::interval(f("ci95_low"), f("ci95_high"))
            );
        }
    }
    assert_eq!(
        shown(c, "variants.best_by_click_rate").await,
        v["best_by_click_rate"].as_str().unwrap()
    );
    assert_eq!(
        shown(c, "holdout.held_out").await,
        v["holdout"]["held_out"].to_string()
    );
}

fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_page_in_chromium_shows_the_reports_numbers_only_after_sign_in() {
    let driver = start_driver().await;
    let g = Gateway::start_with(|c| c.providers[0].delivery_rate = 0.9).await;
    let (id, report) = demo_job(&g).await;
    assert!(report["funnel"]["clicked"]["unique_contacts"].as_u64() > Some(0));
    let c = browser(&driver).await;
    let page = g.url(&format!("/ui/jobs/{id}"));

    // Not signed in: the job's page is the sign-in form, with none of the job's figures.
    c.goto(&page).await.expect("goto");
    let url = c.current_url().await.expect("url");
    assert_eq!(url.path(), "/ui/sign-in", "{url}");
    let html = c.source().await.expect("source");
    assert!(!html.contains("data-metric") && !html.contains("spring-sale"));

    // Sign in through the form; it returns to the job's page.
    c.find(Locator::Id("key"))
        .await
        .expect("key field")
        .send_keys(KEY)
        .await
        .expect("type");
    c.find(Locator::Css("#sign-in button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("submit");
    // A click may answer before the form's navigation has finished.
    let wanted = format!("/ui/jobs/{id}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut url = c.current_url().await.expect("url");
    while url.path() != wanted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        url = c.current_url().await.expect("url");
    }
    assert_eq!(url.path(), wanted, "{url}");
    assert_eq!(shown(&c, "job.status").await, "completed");
    assert_page_equals_report(&c, &report).await;

    // The chart was drawn by the vendored uPlot.
    let drawn = c
        .execute(
            "const cv = document.querySelector('#series-chart canvas'); return cv ? cv.width : 0;",
            vec![],
        )
        .await
        .expect("script");
    assert!(drawn.as_u64() > Some(100), "no chart: {drawn}");

    let dir = screenshot_dir();
    for (width, height) in [(1280u32, 900u32), (375, 812)] {
        c.set_window_size(width, height).await.expect("resize");
        c.goto(&page).await.expect("reload");
        let fit = c
            .execute(
                "return [window.innerWidth, document.documentElement.scrollWidth, document.body.scrollWidth];",
                vec![],
            )
            .await
            .expect("widths");
        let w: Vec<u64> = fit
            .as_array()
            .expect("widths")
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        assert!(
            w[0] <= u64::from(width),
            "the window is {} px wide, asked for {width}",
            w[0]
        );
        assert!(
            w[1] <= w[0] && w[2] <= w[0],
            "the body scrolls sideways at {width} px: {w:?}"
        );
        let png = c.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(dir.join(format!("job-{width}.png")), png).expect("write");
    }
    // The whole page at 1280 px, for the docs.
    let tall = c
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .expect("height")
        .as_u64()
        .unwrap_or(900)
        .min(4000) as u32;
    c.set_window_size(1280, tall + 100).await.expect("resize");
    c.goto(&page).await.expect("reload");
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join("job-1280-full.png"), png).expect("write");

    // Sign out: the page is refused again.
    c.find(Locator::Id("sign-out"))
        .await
        .expect("sign-out button")
        .click()
        .await
        .expect("sign out");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.current_url().await.expect("url").path() != "/ui/sign-in" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.goto(&page).await.expect("goto");
    let url = c.current_url().await.expect("url");
    assert_eq!(url.path(), "/ui/sign-in", "{url}");
    assert!(!c.source().await.expect("source").contains("data-metric"));

    c.close().await.expect("close");
    g.stop().await;
}
