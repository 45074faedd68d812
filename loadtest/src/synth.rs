//! Synthetic contacts and audiences: realistic, valid Chinese mobile numbers with consent and
//! three short attributes, generated on the fly (nothing is written to disk).

use bytes::Bytes;
use futures::Stream;
use serde_json::Value;

const CITIES: [&str; 6] = [
    "Shanghai", "Beijing", "Shenzhen", "Hangzhou", "Chengdu", "Wuhan",
];
const MOBILE_PREFIXES: [u64; 8] = [131, 132, 135, 136, 138, 139, 186, 158];

/// The E.164 number of synthetic contact `i` (distinct for i < 8 * 10^8).
pub fn phone(i: usize) -> u64 {
    let prefix = MOBILE_PREFIXES[i % MOBILE_PREFIXES.len()];
    8_600_000_000_000
        + prefix * 100_000_000
        + (10_000_000 + (i / MOBILE_PREFIXES.len()) as u64 % 90_000_000)
}

/// A snapshot CSV of `n` opted-in contacts.
pub fn snapshot_csv(n: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(n * 64);
    s.extend_from_slice(b"contact_id,phone,timezone,sms_consent,first_name,city,tier\n");
    for i in 0..n {
        use std::io::Write;
        let _ = writeln!(
            s,
            "c{i},+{},Asia/Shanghai,opt_in,N{},{},t{}",
            phone(i),
            i % 1000,
            CITIES[i % CITIES.len()],
            i % 3
        );
    }
    s
}

/// An NDJSON job body: the job line, then one recipient per line, in 1 MiB chunks.
pub fn ndjson_job(
    head: &Value,
    n: usize,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let head = format!("{head}\n");
    futures::stream::unfold((0usize, Some(head)), move |(next, head)| async move {
        if let Some(h) = head {
            return Some((Ok(Bytes::from(h)), (next, None)));
        }
        if next >= n {
            return None;
        }
        let mut buf = Vec::with_capacity(1 << 20);
        let mut i = next;
        while i < n && buf.len() < (1 << 20) - 64 {
            use std::io::Write;
            let _ = writeln!(buf, "{{\"contact_id\":\"c{i}\"}}");
            i += 1;
        }
        Some((Ok(Bytes::from(buf)), (i, None)))
    })
}
