//! Round trips and stored sizes of the journal's forms, and refusal of unknown versions.

use std::collections::HashMap;

use super::*;
use crate::dispatch::journal::{JobControl, StoredJob};
use crate::domain::{Address, Channel, JobId, MessageId};

#[test]
fn log_records_round_trip() {
    let job = JobId::generate();
    let msg = OutboundMessage {
        id: MessageId::derive(&job, "c1", Channel::Sms),
        to: Address::Phone(8613123079337),
        channel: Channel::Sms,
        body: "你好 {{name}}".into(),
        parts: 2,
        content: None,
    };
    let cn = RegionCode(*b"CN");
    let stored = encode_sending(job.as_str(), "carrier-b", [(7u32, cn, &msg)].into_iter());
    assert_eq!(
        decode_record(&stored).unwrap(),
        LogRecord::Sending {
            job: job.as_str().into(),
            provider: Some("carrier-b".into()),
            items: vec![SendingItem {
                index: 7,
                to: msg.phone(),
                parts: 2,
                region: cn,
                body: msg.body.clone()
            }]
        }
    );
    let settled = vec![SettledItem {
        index: 7,
        settlement: Settlement::Sent,
        parts: 2,
        cost_micros: 90_000,
        region: cn,
        provider_message_id: "p-1".into(),
    }];
    let stored = encode_settled(job.as_str(), "carrier-b", 1_764_000_000, &settled);
    assert_eq!(
        decode_record(&stored).unwrap(),
        LogRecord::Settled {
            job: job.as_str().into(),
            provider: Some("carrier-b".into()),
            at: 1_764_000_000,
            items: settled.clone()
        }
    );
    // As written before routing: kind 5, no provider.
    let old = unrouted(&stored, KIND_SETTLED_UNROUTED, "carrier-b");
    assert!(matches!(
        decode_record(&old).unwrap(),
        LogRecord::Settled { provider: None, items, .. } if items == settled
    ));
    assert!(decode_record(&stored[..stored.len() - 3]).is_err());
    assert_eq!(record_job(&stored).unwrap(), job.as_str());
    let stored = encode_delivered(job.as_str(), 1_764_000_060, &[(7, 1)]);
    assert_eq!(
        decode_record(&stored).unwrap(),
        LogRecord::Delivered {
            job: job.as_str().into(),
            at: 1_764_000_060,
            items: vec![(7, 1)]
        }
    );
    let stored = encode_decided(job.as_str(), &[(3, 9), (4, 2)]);
    assert_eq!(
        decode_record(&stored).unwrap(),
        LogRecord::Decided {
            job: job.as_str().into(),
            items: vec![(3, 9), (4, 2)]
        }
    );
    let stored = encode_engaged(job.as_str(), 1_764_000_120, &[(7, ENGAGED_OPEN), (7, 2)]);
    assert_eq!(
        decode_record(&stored).unwrap(),
        LogRecord::Engaged {
            job: job.as_str().into(),
            at: 1_764_000_120,
            items: vec![(7, ENGAGED_OPEN), (7, 2)]
        }
    );
    let consent = vec![ConsentItem {
        contact_id: "c-9".into(),
        channel: 0,
        consent: 2,
        source: "inbound:carrier".into(),
        at: 1_764_000_240,
    }];
    let acme = crate::access::TenantId::parse("acme").unwrap();
    let stored = encode_consent(&acme, &consent);
    assert_eq!(
        decode_record(&stored).unwrap(),
        LogRecord::Consent {
            tenant: acme,
            items: consent.clone()
        }
    );
    assert_eq!(record_job(&stored).unwrap(), "");
    // The form written before tenants had their own contacts reads as the default one's.
    let mut w = Writer::record(KIND_CONSENT_UNTENANTED, "", 1, 64);
    for c in &consent {
        w.bytes(c.contact_id.as_bytes());
        w.u8(c.channel);
        w.u8(c.consent);
        w.bytes(c.source.as_bytes());
        w.u64(c.at as u64);
    }
    assert_eq!(
        decode_record(&w.finish_compressed()).unwrap(),
        LogRecord::Consent {
            tenant: crate::access::TenantId::default_tenant(),
            items: consent
        }
    );
    let stored = encode_in_doubt(job.as_str(), 1_764_000_300, &[7, 9]);
    assert_eq!(
        decode_record(&stored).unwrap(),
        LogRecord::InDoubt {
            job: job.as_str().into(),
            at: 1_764_000_300,
            items: vec![7, 9]
        }
    );
    assert_eq!(record_job(&stored).unwrap(), job.as_str());
    let stored = encode_budget_exhausted(job.as_str(), 1_764_000_180);
    assert_eq!(
        decode_record(&stored).unwrap(),
        LogRecord::BudgetExhausted {
            job: job.as_str().into(),
            at: 1_764_000_180
        }
    );
    let stored = encode_withdrawn(job.as_str(), &[5, 6]);
    assert_eq!(
        decode_record(&stored).unwrap(),
        LogRecord::Withdrawn {
            job: job.as_str().into(),
            items: vec![5, 6]
        }
    );
    assert_eq!(record_job(&stored).unwrap(), job.as_str());
}

/// `stored` (a routed record naming `provider`) in the form written before routing.
fn unrouted(stored: &[u8], kind: u8, provider: &str) -> Vec<u8> {
    let job_len = u32::from_le_bytes(stored[2..6].try_into().unwrap()) as usize;
    let provider_at = 2 + 4 + job_len + 4;
    let mut old = stored[..provider_at].to_vec();
    old[1] = kind;
    old.extend_from_slice(&stored[provider_at + 4 + provider.len()..]);
    old
}

#[test]
fn sending_records_written_before_routing_read_without_a_provider() {
    let job = JobId::generate();
    let msg = OutboundMessage {
        id: MessageId::derive(&job, "c1", Channel::Sms),
        to: Address::Phone(8613123079337),
        channel: Channel::Sms,
        body: "hi".into(),
        parts: 1,
        content: None,
    };
    let cn = RegionCode(*b"CN");
    let stored = encode_sending(job.as_str(), "a", [(3u32, cn, &msg)].into_iter());
    let old = unrouted(&stored, KIND_SENDING_UNROUTED, "a");
    match decode_record(&old).unwrap() {
        LogRecord::Sending {
            provider, items, ..
        } => {
            assert_eq!(provider, None);
            assert_eq!((items[0].index, items[0].to), (3, msg.phone()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn records_of_one_template_are_stored_in_few_bytes_per_message() {
    let job = JobId::generate();
    let messages: Vec<OutboundMessage> = (0..512)
        .map(|i| OutboundMessage {
            id: MessageId::derive(&job, &format!("c{i}"), Channel::Sms),
            to: Address::Phone(33_612_345_000 + i as u64),
            channel: Channel::Sms,
            body: format!("Hi Name{i}, 20% off in City{} tonight only", i % 9),
            parts: 1,
            content: None,
        })
        .collect();
    let fr = RegionCode(*b"FR");
    let stored = encode_sending(
        job.as_str(),
        "p",
        messages.iter().enumerate().map(|(i, m)| (i as u32, fr, m)),
    );
    let body_bytes: usize = messages.iter().map(|m| m.body.len()).sum();
    assert!(
        stored.len() < 512 * 18 + body_bytes / 2,
        "{} bytes",
        stored.len()
    );
    let LogRecord::Sending { items, .. } = decode_record(&stored).unwrap() else {
        panic!("a sending record");
    };
    let bodies: Vec<&str> = items.iter().map(|i| i.body.as_str()).collect();
    let sent: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, sent);
    let settled: Vec<SettledItem> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| SettledItem {
            index: i as u32,
            settlement: if i % 50 == 7 {
                Settlement::Failed
            } else {
                Settlement::Sent
            },
            parts: 1,
            cost_micros: 45_000,
            region: fr,
            provider_message_id: if i % 50 == 7 {
                String::new()
            } else {
                format!("sbx-{:032x}", m.id.as_u128())
            },
        })
        .collect();
    let stored = encode_settled(job.as_str(), "p", 1_764_000_000, &settled);
    assert!(stored.len() < 512 * 40, "{} bytes", stored.len());
    assert_eq!(
        decode_record(&stored).unwrap(),
        LogRecord::Settled {
            job: job.as_str().into(),
            provider: Some("p".into()),
            at: 1_764_000_000,
            items: settled
        }
    );
}

#[test]
fn audience_chunks_round_trip() {
    let vars: HashMap<String, String> = [("name".to_string(), "Li".to_string())].into();
    let stored = encode_audience_chunk(
        [
            StoredRecipient {
                contact_id: "c1",
                phone: Some("+8613123079337"),
                variables: Some(&vars),
            },
            StoredRecipient {
                contact_id: "c2",
                phone: None,
                variables: None,
            },
        ]
        .into_iter(),
    );
    let mut seen = Vec::new();
    decode_audience_chunk(&stored, |id, phone, v| {
        seen.push((id.to_string(), phone.map(str::to_string), v));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![
            ("c1".into(), Some("+8613123079337".into()), Some(vars)),
            ("c2".into(), None, None)
        ]
    );
}

/// `stored` with its version byte replaced by 7.
fn version_7(mut stored: Vec<u8>) -> Vec<u8> {
    stored[0] = 7;
    stored
}

fn refused(e: CodecError, what: &str) {
    assert!(matches!(e, CodecError::Format(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("{what}: format version 7 is not known to this herald")
    );
}

#[test]
fn values_of_an_unknown_format_version_are_refused() {
    let job = JobId::generate();
    let msg = OutboundMessage {
        id: MessageId::derive(&job, "c1", Channel::Sms),
        to: Address::Phone(8613123079337),
        channel: Channel::Sms,
        body: "hi".into(),
        parts: 1,
        content: None,
    };
    let cn = RegionCode(*b"CN");
    let records = [
        encode_sending(job.as_str(), "p", [(1u32, cn, &msg)].into_iter()),
        encode_settled(job.as_str(), "p", 1_764_000_000, &[]),
        encode_delivered(job.as_str(), 1_764_000_000, &[(1, 1)]),
        encode_decided(job.as_str(), &[(1, 2)]),
        encode_withdrawn(job.as_str(), &[1]),
    ];
    for stored in records {
        assert_eq!(stored[0], RECORD_VERSION);
        assert!(decode_record(&stored).is_ok());
        let stored = version_7(stored);
        refused(decode_record(&stored).unwrap_err(), "journal record");
        refused(record_job(&stored).unwrap_err(), "journal record");
    }
    // The kinds of the first journal (1 and 2) are not read.
    for kind in [1, 2] {
        let mut stored = encode_withdrawn(job.as_str(), &[1]);
        stored[1] = kind;
        assert!(matches!(
            decode_record(&stored),
            Err(CodecError::Unreadable("unknown record kind"))
        ));
    }

    let chunk = encode_audience_chunk(
        [StoredRecipient {
            contact_id: "c1",
            phone: None,
            variables: None,
        }]
        .into_iter(),
    );
    assert_eq!(chunk[0], AUDIENCE_CHUNK_VERSION);
    let e = decode_audience_chunk(&version_7(chunk), |_, _, _| Ok(())).unwrap_err();
    refused(e, "audience chunk");

    let plan = StoredJob {
        id: job.clone(),
        spec: crate::dispatch::job::JobSpec {
            campaign_id: "c".into(),
            channel: Channel::Sms,
            purpose: crate::domain::Purpose::Transactional,
            priority: 200,
            send_at: None,
            template_body: "hi".into(),
            phone_mismatch: Default::default(),
            created_at: "2026-11-23T04:00:00Z".parse().unwrap(),
            variants: None,
            tenant: Default::default(),
            fields: None,
            wechat_account: None,
        },
        variables: HashMap::new(),
        track_links: false,
        audience_len: 1,
        shards: 1,
    };
    let stored = encode_plan(&plan).unwrap();
    assert_eq!(stored[0], PLAN_VERSION);
    assert_eq!(decode_plan(&stored).unwrap().id, job);
    refused(decode_plan(&version_7(stored)).unwrap_err(), "job plan");

    let control = JobControl {
        status: crate::domain::JobStatus::Running,
        started_at: None,
        finished_at: None,
        budget_micros: Some(5),
        rollout: None,
    };
    let stored = encode_control(&control).unwrap();
    assert_eq!(stored[0], CONTROL_VERSION);
    assert_eq!(decode_control(&stored).unwrap().budget_micros, Some(5));
    refused(
        decode_control(&version_7(stored)).unwrap_err(),
        "job control",
    );
}
