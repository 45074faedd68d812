//! The ledger writer's write-ahead log. A group commit is durable once its frame is appended
//! to the current segment file and synced: one write and one `fdatasync`, instead of a
//! database transaction per round, which costs several times as much at thousands of rounds a
//! second. Segments are applied to the database in the background (one transaction for many
//! rounds) and deleted once that transaction is durable; whatever a crash left in segments is
//! applied again when the ledger opens, before anything reads it. Applying is idempotent:
//! every frame carries the keys its values go under.
//!
//! Frame: `u32 payload_len, u64 xxh3(payload), payload`; payload:
//! `u8 has_block [u64 key, u32 len, bytes], u8 has_records [u64 key, u32 len, bytes]`.
//! A frame cut short by a crash (short, or failing its checksum) ends the segment: it was
//! never acknowledged.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

/// The values one round writes: its block of entries and its records, each under its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    pub block: Option<(u64, Vec<u8>)>,
    pub records: Option<(u64, Vec<u8>)>,
}

impl Round {
    /// Whether the round writes nothing.
    pub fn is_empty(&self) -> bool {
        self.block.is_none() && self.records.is_none()
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&[0; 12]);
        for value in [&self.block, &self.records] {
            match value {
                Some((key, bytes)) => {
                    out.push(1);
                    out.extend_from_slice(&key.to_le_bytes());
                    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    out.extend_from_slice(bytes);
                }
                None => out.push(0),
            }
        }
        let payload_len = (out.len() - at - 12) as u32;
        let sum = xxh3_64(&out[at + 12..]);
        out[at..at + 4].copy_from_slice(&payload_len.to_le_bytes());
        out[at + 4..at + 12].copy_from_slice(&sum.to_le_bytes());
    }
}

/// Reads the frames of one segment, up to the first that is incomplete or damaged.
fn decode_segment(mut bytes: &[u8]) -> Vec<Round> {
    fn value(p: &mut &[u8]) -> Option<Option<(u64, Vec<u8>)>> {
        let (&flag, rest) = p.split_first()?;
        *p = rest;
        if flag == 0 {
            return Some(None);
        }
        let key = u64::from_le_bytes(p.get(..8)?.try_into().ok()?);
        let n = u32::from_le_bytes(p.get(8..12)?.try_into().ok()?) as usize;
        let v = p.get(12..12 + n)?.to_vec();
        *p = &p[12 + n..];
        Some(Some((key, v)))
    }
    let mut rounds = Vec::new();
    while bytes.len() >= 12 {
        let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let sum = u64::from_le_bytes(bytes[4..12].try_into().unwrap_or_default());
        let Some(payload) = bytes.get(12..12 + n) else {
            break;
        };
        if xxh3_64(payload) != sum {
            break;
        }
        let mut p = payload;
        let (Some(block), Some(records)) = (value(&mut p), value(&mut p)) else {
            break;
        };
        rounds.push(Round { block, records });
        bytes = &bytes[12 + n..];
    }
    rounds
}

/// The segment files of a log directory, oldest first, with their numbers.
pub fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = number {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The rounds kept in the segments of `dir`, oldest first.
pub fn read_all(dir: &Path) -> io::Result<Vec<(u64, Vec<Round>)>> {
    segments(dir)?
        .into_iter()
        .map(|(n, path)| Ok((n, decode_segment(&fs::read(path)?))))
        .collect()
}

/// The rounds kept in segment `number` of `dir`.
pub fn read_segment(dir: &Path, number: u64) -> io::Result<Vec<Round>> {
    Ok(decode_segment(&fs::read(segment_path(dir, number))?))
}

/// Deletes segment `number` of `dir` (its rounds are in the database).
pub fn remove_segment(dir: &Path, number: u64) -> io::Result<()> {
    match fs::remove_file(segment_path(dir, number)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:012}.wal"))
}

/// The segment being appended to.
pub struct Wal {
    dir: PathBuf,
    file: File,
    number: u64,
    bytes: u64,
    frame: Vec<u8>,
    /// Whether rounds were written since the last sync.
    unsynced: bool,
}

impl Wal {
    /// Starts a new segment after the ones already in `dir`.
    pub fn create(dir: &Path) -> io::Result<Wal> {
        fs::create_dir_all(dir)?;
        let number = segments(dir)?.last().map_or(1, |(n, _)| n + 1);
        Wal::start(dir.to_path_buf(), number)
    }

    fn start(dir: PathBuf, number: u64) -> io::Result<Wal> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(segment_path(&dir, number))?;
        // The new file's directory entry must survive a crash too.
        File::open(&dir)?.sync_all()?;
        Ok(Wal {
            dir,
            file,
            number,
            bytes: 0,
            frame: Vec::new(),
            unsynced: false,
        })
    }

    /// Appends rounds, in order, with one write and one sync.
    pub fn append(&mut self, rounds: &[Round]) -> io::Result<()> {
        self.write(rounds)?;
        self.sync()
    }

    /// Appends rounds, in order, with one write; they are durable after the next
    /// [`Wal::sync`] (or rotation).
    pub fn write(&mut self, rounds: &[Round]) -> io::Result<()> {
        self.frame.clear();
        for round in rounds {
            round.encode_into(&mut self.frame);
        }
        self.unsynced = true;
        self.file.write_all(&self.frame)?;
        self.bytes += self.frame.len() as u64;
        Ok(())
    }

    /// Whether rounds were written since the last sync.
    pub fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// Makes every round written so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Bytes appended to the current segment.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Closes the current segment and starts the next; answers the closed segment's number.
    /// Rounds written and not synced must be synced first (or given up as failed).
    pub fn rotate(&mut self) -> io::Result<u64> {
        let next = Wal::start(self.dir.clone(), self.number + 1)?;
        let closed = std::mem::replace(self, next);
        Ok(closed.number)
    }

    /// The number of the current segment.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(n: u64) -> Round {
        Round {
            block: n
                .is_multiple_of(2)
                .then(|| (n, vec![n as u8; n as usize * 10])),
            records: Some((n + 100, b"records".to_vec())),
        }
    }

    #[test]
    fn rounds_read_back_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path()).unwrap();
        wal.append(&[round(1), round(2)]).unwrap();
        let closed = wal.rotate().unwrap();
        wal.append(&[round(3)]).unwrap();
        let all = read_all(dir.path()).unwrap();
        assert_eq!(
            all,
            vec![
                (closed, vec![round(1), round(2)]),
                (wal.number(), vec![round(3)])
            ]
        );
        remove_segment(dir.path(), closed).unwrap();
        assert_eq!(read_all(dir.path()).unwrap().len(), 1);
        // A later writer starts after the segments it finds.
        let again = Wal::create(dir.path()).unwrap();
        assert!(again.number() > wal.number());
    }

    #[test]
    fn a_torn_or_damaged_frame_ends_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path()).unwrap();
        wal.append(&[round(1)]).unwrap();
        wal.append(&[round(2), round(3)]).unwrap();
        let path = segment_path(dir.path(), wal.number());
        let bytes = fs::read(&path).unwrap();
        // Cut inside the last frame, as a crash during its write would.
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(read_all(dir.path()).unwrap()[0].1, vec![round(1), round(2)]);
        // A flipped byte inside the second frame's payload.
        let mut damaged = bytes.clone();
        let second = 12 + (u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize);
        damaged[second + 20] ^= 0xff;
        fs::write(&path, &damaged).unwrap();
        assert_eq!(read_all(dir.path()).unwrap()[0].1, vec![round(1)]);
    }
}
