//! Provider calls over HTTPS: the generic HTTP provider reaches a TLS server whose certificate
//! a test CA signed when it names that CA in `ca_file`, negotiates HTTP/2, and reuses its
//! connection; without the CA the handshake fails and nothing is sent (a named error).

use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use herald::clock::SystemClock;
use herald::config::ProviderKind;
use herald::domain::{Address, Channel, JobId, MessageId};
use herald::provider::http::{HttpProvider, HttpSettings};
use herald::provider::{OutboundMessage, Provider, SendOutcome};
use herald_testkit::https::TestCa;
use serde_json::json;

use crate::cloud_support::{gateway, outcomes, send_job};

fn settings(url: &str, ca_file: Option<String>) -> HttpSettings {
    HttpSettings {
        name: "tls".into(),
        url: url.parse().expect("url"),
        auth: None,
        batch_size: 1,
        max_in_flight: 4,
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        sender_id: "HERALD".into(),
        ca_file,
    }
}

fn message(i: usize) -> OutboundMessage {
    OutboundMessage {
        id: MessageId::derive(&JobId::generate(), &format!("c{i}"), Channel::Sms),
        to: Address::Phone(8613123000000 + i as u64),
        channel: Channel::Sms,
        body: "Hi".into(),
        parts: 1,
        content: None,
    }
}

fn accepting() -> axum::Router {
    axum::Router::new().route(
        "/v1/messages",
        post(|body: axum::body::Bytes| async move {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            json!({"provider_message_id": format!("p-{}", v["id"].as_str().unwrap_or("")), "status": "accepted"})
                .to_string()
        }),
    )
}

#[tokio::test]
async fn cloud_https_with_the_ca_file_sends_over_one_http2_connection() {
    let ca = TestCa::new();
    let server = ca.serve(accepting()).await;
    let provider = HttpProvider::new(
        settings(&server.url("/v1/messages"), Some(ca.ca_file())),
        Arc::new(SystemClock),
    )
    .expect("provider");
    for i in 0..20 {
        let m = message(i);
        let out = provider.send_batch(std::slice::from_ref(&m)).await;
        assert_eq!(
            out,
            vec![SendOutcome::Accepted {
                provider_message_id: format!("p-{}", m.id)
            }]
        );
    }
    // Sequential sends reuse one pooled connection: one handshake, not twenty.
    assert_eq!(server.handshakes(), 1, "one TLS handshake for 20 requests");
    assert_eq!(server.h2_connections(), 1, "HTTP/2 negotiated by ALPN");
    // Concurrent sends multiplex on HTTP/2 rather than opening a connection each.
    let batch: Vec<OutboundMessage> = (100..140).map(message).collect();
    let out = provider.send_batch(&batch).await;
    assert!(
        out.iter()
            .all(|o| matches!(o, SendOutcome::Accepted { .. })),
        "{out:?}"
    );
    assert!(
        server.handshakes() <= 4,
        "{} handshakes",
        server.handshakes()
    );
}

#[tokio::test]
async fn cloud_https_without_the_ca_file_is_refused_with_a_named_error() {
    let ca = TestCa::new();
    let server = ca.serve(accepting()).await;
    let provider = HttpProvider::new(
        settings(&server.url("/v1/messages"), None),
        Arc::new(SystemClock),
    )
    .expect("provider");
    let out = provider.send_batch(&[message(1)]).await;
    match &out[..] {
        [SendOutcome::Unavailable { error }] => {
            assert!(error.contains("certificate"), "{error}")
        }
        other => panic!("expected a refused handshake, got {other:?}"),
    }
    assert_eq!(server.handshakes(), 0, "no request reached the server");
    // The server sees the broken-off handshake a moment after the client gave up.
    let start = std::time::Instant::now();
    while server.failed_handshakes() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the client broke the handshake off"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Another CA's file does not help either.
    let other = TestCa::new();
    let provider = HttpProvider::new(
        settings(&server.url("/v1/messages"), Some(other.ca_file())),
        Arc::new(SystemClock),
    )
    .expect("provider");
    assert!(matches!(
        &provider.send_batch(&[message(2)]).await[..],
        [SendOutcome::Unavailable { error }] if error.contains("certificate")
    ));
}

#[tokio::test]
async fn cloud_https_a_job_through_the_generic_provider_over_tls() {
    let ca = TestCa::new();
    let server = ca.serve(accepting()).await;
    let url = server.url("/v1/messages");
    let g = gateway(&ca, ProviderKind::Http, |p| p.url = Some(url)).await;
    let job = send_job(&g, 6).await;
    let lines = outcomes(&g, &job).await;
    assert_eq!(lines.len(), 6);
    assert!(lines.iter().all(|(_, o, _)| o == "sent"), "{lines:?}");
    assert!(server.handshakes() >= 1);
}

/// Sends `n` single-message requests, `in_flight` at a time; answers requests per second.
async fn rate(provider: &HttpProvider, n: usize) -> f64 {
    let batch: Vec<OutboundMessage> = (0..n).map(message).collect();
    let start = std::time::Instant::now();
    let out = provider.send_batch(&batch).await;
    let took = start.elapsed().as_secs_f64();
    assert!(
        out.iter()
            .all(|o| matches!(o, SendOutcome::Accepted { .. })),
        "every request accepted"
    );
    n as f64 / took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_https_keeps_its_connections_under_load() {
    const N: usize = 2_000;
    let ca = TestCa::new();
    let tls = ca.serve(accepting()).await;
    let https = HttpProvider::new(
        settings(&tls.url("/v1/messages"), Some(ca.ca_file())),
        Arc::new(SystemClock),
    )
    .expect("provider");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let plain_server = tokio::spawn(async move {
        let _ = axum::serve(listener, accepting()).await;
    });
    let plain = HttpProvider::new(
        settings(&format!("http://{addr}/v1/messages"), None),
        Arc::new(SystemClock),
    )
    .expect("provider");
    let plain_rate = rate(&plain, N).await;
    let https_rate = rate(&https, N).await;
    plain_server.abort();
    eprintln!(
        "{N} requests, 4 in flight: http/1.1 {plain_rate:.0}/s, https (h2) {https_rate:.0}/s, \
         {} TLS handshakes",
        tls.handshakes()
    );
    // No handshake per request: at most one connection per request in flight.
    assert!(tls.handshakes() <= 4, "{} handshakes", tls.handshakes());
}
