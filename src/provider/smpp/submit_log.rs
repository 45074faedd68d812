//! The submit log: what each bind wrote to the SMSC and what the SMSC answered, one line per
//! event, appended to a file in the data directory. It is what lets a restarted gateway tell
//! apart, among the messages the journal shows in flight at a crash, those the SMSC never saw
//! (sent again), those it accepted (settled as sent, under the SMSC's id) and those truly in
//! doubt (written, answer never read).
//!
//! Ordering is the whole contract: a part's `w` line is written (to the operating system, so
//! it survives the process being killed) before its `submit_sm` is handed to the socket; a
//! part that could not be logged is not sent. Its `a` line follows the `submit_sm_resp`.
//! So a part without a line was never written to the SMSC, and a part with a `w` line and
//! no `a` line is the only kind that is genuinely unknown: at most `window` per bind.
//!
//! Two generations are kept (`<name>.log`, `<name>.log.1`), the live one rotated past
//! [`ROTATE_BYTES`] (about 180,000 messages), far more than is ever in flight at a crash.
//! The messages found unknown at a restart are added to `<name>.doubt`, which is never
//! rotated, so one in doubt is never later mistaken for one never written (it only grows by
//! what is in doubt at each crash: at most the windows).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::domain::MessageId;

/// Size of the live file past which it becomes the previous generation.
pub const ROTATE_BYTES: u64 = 16 << 20;

/// The part of a message a `submit_sm` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartTag {
    pub message: MessageId,
    /// 1-based.
    pub part: u8,
    pub total: u8,
}

/// The last thing the log says about one part.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PartRecord {
    Written,
    Answered { status: u32, smsc_id: String },
}

/// What the log tells about a message after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoggedFate {
    /// Its last attempt did not write every part, or the SMSC refused one: nothing of that
    /// attempt reached a phone whole; it may be sent again.
    NotSent,
    /// Every part accepted; the SMSC's ids, part by part.
    Accepted { smsc_ids: Vec<String> },
    /// A part was written and its answer never read.
    Unknown,
}

/// The log of one provider.
pub struct SubmitLog {
    live: PathBuf,
    previous: PathBuf,
    doubt: PathBuf,
    /// The doubt file's lines, as it was at open and as added since.
    doubtful: Mutex<Vec<String>>,
    rotate_at: u64,
    file: Mutex<(File, u64)>,
}

impl SubmitLog {
    /// Opens (creating) the log of provider `name` under `dir`.
    pub fn open(dir: &Path, name: &str) -> io::Result<SubmitLog> {
        Self::open_rotating_at(dir, name, ROTATE_BYTES)
    }

    fn open_rotating_at(dir: &Path, name: &str, rotate_at: u64) -> io::Result<SubmitLog> {
        std::fs::create_dir_all(dir)?;
        let file_name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let live = dir.join(format!("{file_name}.log"));
        let previous = dir.join(format!("{file_name}.log.1"));
        let doubt = dir.join(format!("{file_name}.doubt"));
        let doubtful = match std::fs::read_to_string(&doubt) {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let file = OpenOptions::new().create(true).append(true).open(&live)?;
        let len = file.metadata()?.len();
        Ok(SubmitLog {
            live,
            previous,
            doubt,
            doubtful: Mutex::new(doubtful),
            rotate_at,
            file: Mutex::new((file, len)),
        })
    }

    /// Records parts about to be written; they must not be sent when this fails.
    pub fn writing<'a>(&self, tags: impl IntoIterator<Item = &'a PartTag>) -> io::Result<()> {
        let mut buf = String::new();
        for t in tags {
            buf.push_str(&format!("w {} {} {}\n", t.message, t.part, t.total));
        }
        self.append(buf.as_bytes())
    }

    /// Records the SMSC's answer to a part. A failure only widens what a restart cannot tell.
    pub fn answered(&self, tag: &PartTag, status: u32, smsc_id: &str) {
        let line = format!(
            "a {} {} {} {:x} {}\n",
            tag.message,
            tag.part,
            tag.total,
            status,
            hex(smsc_id.as_bytes())
        );
        if let Err(e) = self.append(line.as_bytes()) {
            tracing::warn!(error = %e, "the SMPP submit log could not record an answer");
        }
    }

    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut guard = self.file.lock();
        if guard.1 >= self.rotate_at {
            std::fs::rename(&self.live, &self.previous)?;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.live)?;
            *guard = (file, 0);
        }
        guard.0.write_all(bytes)?;
        guard.1 += bytes.len() as u64;
        Ok(())
    }

    /// What the log says of each message (by id, with its part count), reading both
    /// generations once, after the doubt file; the unknown ones are added to the doubt file.
    pub fn fates(&self, messages: &[(MessageId, u8)]) -> io::Result<Vec<LoggedFate>> {
        let wanted: HashSet<String> = messages.iter().map(|(m, _)| m.to_string()).collect();
        let mut records: HashMap<String, HashMap<u8, PartRecord>> = HashMap::new();
        for line in self.doubtful.lock().iter() {
            if let Some((id, part, record)) = parse_line(line, &wanted) {
                records.entry(id).or_default().insert(part, record);
            }
        }
        for path in [&self.previous, &self.live] {
            let file = match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for line in BufReader::new(file).lines() {
                let line = line?;
                if let Some((id, part, record)) = parse_line(&line, &wanted) {
                    records.entry(id).or_default().insert(part, record);
                }
            }
        }
        let fates: Vec<LoggedFate> = messages
            .iter()
            .map(|(m, total)| fate(records.get(&m.to_string()), *total))
            .collect();
        let mut doubtful = self.doubtful.lock();
        let before = doubtful.len();
        for ((m, total), f) in messages.iter().zip(&fates) {
            let line = format!("w {m} 1 {total}");
            if *f == LoggedFate::Unknown && !doubtful.contains(&line) {
                doubtful.push(line);
            }
        }
        if doubtful.len() > before {
            let next = self.doubt.with_extension("doubt.next");
            std::fs::write(&next, doubtful.join("\n") + "\n")?;
            std::fs::rename(&next, &self.doubt)?;
        }
        Ok(fates)
    }
}

/// One line, when it is about a wanted message.
fn parse_line(line: &str, wanted: &HashSet<String>) -> Option<(String, u8, PartRecord)> {
    let mut f = line.split(' ');
    let kind = f.next()?;
    let id = f.next()?;
    if !wanted.contains(id) {
        return None;
    }
    let part: u8 = f.next()?.parse().ok()?;
    let _total: u8 = f.next()?.parse().ok()?;
    let record = match kind {
        "w" => PartRecord::Written,
        "a" => PartRecord::Answered {
            status: u32::from_str_radix(f.next()?, 16).ok()?,
            smsc_id: String::from_utf8_lossy(&unhex(f.next().unwrap_or(""))?).into_owned(),
        },
        _ => return None,
    };
    Some((id.to_string(), part, record))
}

/// The fate of a message from the last record of each of its parts. Parts go out one after
/// the other, so the first part that is not accepted decides.
fn fate(records: Option<&HashMap<u8, PartRecord>>, total: u8) -> LoggedFate {
    let Some(records) = records else {
        return LoggedFate::NotSent;
    };
    let mut smsc_ids = Vec::with_capacity(total as usize);
    for part in 1..=total.max(1) {
        match records.get(&part) {
            None => return LoggedFate::NotSent,
            Some(PartRecord::Written) => return LoggedFate::Unknown,
            Some(PartRecord::Answered { status: 0, smsc_id }) => smsc_ids.push(smsc_id.clone()),
            Some(PartRecord::Answered { .. }) => return LoggedFate::NotSent,
        }
    }
    LoggedFate::Accepted { smsc_ids }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, JobId};

    fn id(n: u32) -> MessageId {
        let job = JobId::parse("job_0123456789abcdef0123456789abcdef").expect("job id");
        MessageId::derive(&job, &format!("c{n}"), Channel::Sms)
    }

    fn tag(n: u32, part: u8, total: u8) -> PartTag {
        PartTag {
            message: id(n),
            part,
            total,
        }
    }

    #[test]
    fn each_message_reads_as_what_its_parts_went_through() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = SubmitLog::open(dir.path(), "carrier a").expect("open");
        // 1: accepted whole. 2: written, no answer. 3: never written. 4: part 2 refused.
        // 5: accepted once, then refused on a later attempt's first part.
        log.writing(&[tag(1, 1, 2), tag(2, 1, 1), tag(4, 1, 2), tag(5, 1, 1)])
            .expect("write");
        log.answered(&tag(1, 1, 2), 0, "A1");
        log.writing(&[tag(1, 2, 2)]).expect("write");
        log.answered(&tag(1, 2, 2), 0, "id with space");
        log.answered(&tag(4, 1, 2), 0, "B1");
        log.writing(&[tag(4, 2, 2)]).expect("write");
        log.answered(&tag(4, 2, 2), 0x58, "");
        log.answered(&tag(5, 1, 1), 0, "C1");
        log.writing(&[tag(5, 1, 1)]).expect("write");
        log.answered(&tag(5, 1, 1), 0x14, "");
        let asked = [(id(1), 2), (id(2), 1), (id(3), 1), (id(4), 2), (id(5), 1)];
        let fates = log.fates(&asked).expect("fates");
        assert_eq!(
            fates,
            vec![
                LoggedFate::Accepted {
                    smsc_ids: vec!["A1".into(), "id with space".into()]
                },
                LoggedFate::Unknown,
                LoggedFate::NotSent,
                LoggedFate::NotSent,
                LoggedFate::NotSent,
            ]
        );
        // A reopened log (a restart) reads the same.
        drop(log);
        let log = SubmitLog::open_rotating_at(dir.path(), "carrier a", 4096).expect("reopen");
        assert_eq!(log.fates(&asked).expect("fates"), fates);
        // Rotations later the accepted message is forgotten, but the unknown one was kept
        // apart by the restart's reading and is still in doubt.
        for n in 100..300 {
            log.writing(&[tag(n, 1, 1)]).expect("write");
            log.answered(&tag(n, 1, 1), 0, "X");
        }
        let later = log.fates(&[(id(1), 2), (id(2), 1)]).expect("fates");
        assert_eq!(later, vec![LoggedFate::NotSent, LoggedFate::Unknown]);
        // Asking about others (another job, a later restart) never forgets it.
        log.writing(&[tag(7, 1, 1)]).expect("write");
        assert_eq!(
            log.fates(&[(id(7), 1)]).expect("fates"),
            vec![LoggedFate::Unknown]
        );
        drop(log);
        let log = SubmitLog::open_rotating_at(dir.path(), "carrier a", 4096).expect("reopen");
        for n in 300..500 {
            log.writing(&[tag(n, 1, 1)]).expect("write");
        }
        let both = log.fates(&[(id(2), 1), (id(7), 1)]).expect("fates");
        assert_eq!(both, vec![LoggedFate::Unknown, LoggedFate::Unknown]);
    }
}
