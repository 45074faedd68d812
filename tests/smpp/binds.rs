//! Bind modes and TLS against the simulator: transmitter and receiver pairs carry submits one
//! way and receipts and replies the other; TLS (Python's ssl in front of the simulator, a CA
//! made for the test) binds only when the SMSC's certificate chains to the configured CA.

use std::sync::Arc;
use std::time::Duration;

use herald::config::{BindMode, SmppConfig};
use herald::provider::{Provider, SendOutcome};
use serde_json::json;

use crate::smsc::Smsc;
use crate::{accepted_id, message, provider, smpp_config, wait_for, Recorder, WAIT};

#[tokio::test]
async fn transmitter_receiver_pairs_send_on_one_and_receive_on_the_other() {
    let mut smsc = Smsc::start(&["--receipts", "tlv"]).await;
    let rec = Arc::new(Recorder::default());
    let config = SmppConfig {
        binds: 2,
        bind_mode: BindMode::TransmitterReceiver,
        ..smpp_config(smsc.port)
    };
    let p = provider(config, Some(rec.clone())).await;
    let binds = smsc.wait_count("bind", 4, WAIT).await;
    let receiving = binds.iter().filter(|b| b["can_receive"] == true).count();
    assert_eq!(receiving, 2, "two receivers among {binds:?}");
    wait_for("both receivers bound", || {
        (p.bound_receivers() == 2).then_some(())
    })
    .await;
    assert_eq!(p.bound_binds(), 2);

    let out = p.send_batch(&[message(1, 8613123000001, "Hello")]).await;
    let id = accepted_id(&out[0]);
    let submit = smsc.wait_for("submit_sm", WAIT).await;
    let transmitters: Vec<_> = binds
        .iter()
        .filter(|b| b["can_receive"] == false)
        .map(|b| b["session"].clone())
        .collect();
    assert!(transmitters.contains(&submit["session"]), "{submit}");
    // The receipt comes on a receiver bind.
    let receipt = wait_for("the receipt", || rec.receipts.lock().first().cloned()).await;
    assert_eq!(receipt.1.message_id, id);
    smsc.command(json!({"cmd": "mo", "from": "8613123000001", "text": "STOP"}));
    let reply = wait_for("the reply", || rec.inbound.lock().first().cloned()).await;
    assert_eq!(reply.1.text, "STOP");
    p.shutdown().await;
}

/// A CA and a certificate for `localhost` signed by it, as PEM: (ca, cert, key).
fn test_ca() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("cert");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn tls_binds_to_an_smsc_whose_certificate_chains_to_the_ca_file_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = test_ca();
    let (other_ca, _, _) = test_ca();
    let path = |name: &str, pem: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).expect("write pem");
        p.display().to_string()
    };
    let (ca_file, other_file) = (path("ca.pem", &ca), path("other.pem", &other_ca));
    let (cert_file, key_file) = (path("cert.pem", &cert), path("key.pem", &key));
    let mut smsc = Smsc::start(&["--tls-cert", &cert_file, "--tls-key", &key_file]).await;
    let port = smsc.port;
    let tls = |ca: &str| SmppConfig {
        host: "localhost".into(),
        tls: true,
        ca_file: Some(ca.to_string()),
        connect_timeout_ms: 500,
        ..smpp_config(port)
    };

    let p = provider(tls(&ca_file), None).await;
    let out = p.send_batch(&[message(1, 8613123000001, "Over TLS")]).await;
    let id = accepted_id(&out[0]);
    let submit = smsc.wait_for("submit_sm", WAIT).await;
    assert_eq!(submit["message_id"], id.as_str());
    p.shutdown().await;

    // A certificate from another CA is refused: no bind, nothing sent.
    let settings = herald::provider::smpp::SmppSettings {
        name: "carrier".into(),
        smpp: tls(&other_file),
        message_id_format: herald::config::MessageIdFormat::Hex,
        jitter_seed: 7,
    };
    let refused = herald::provider::smpp::SmppProvider::start(settings, None);
    assert!(!refused.wait_bound(Duration::from_secs(2)).await);
    let out = refused.send_batch(&[message(2, 8613123000002, "No")]).await;
    assert!(matches!(out[0], SendOutcome::Unavailable { .. }), "{out:?}");
    refused.shutdown().await;
    smsc.drain();
    assert_eq!(smsc.of("submit_sm").len(), 1);
}
