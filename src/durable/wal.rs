//! The durable writer's write-ahead log. A group commit is durable once its frame is written
//! to the current segment file and synced: one write and one `fdatasync`, instead of a
//! database transaction per round, which costs several times as much at thousands of rounds a
//! second. Segments are applied to the database in the background (one transaction for many
//! rounds); whatever a crash left in segments is applied again when the layer opens, before
//! anything reads the database. Applying is idempotent: every frame carries the keys its values go under.
//!
//! Segments are written over blocks that already exist: an applied segment is kept as a spare
//! (`<n>.spare`) and the next segment is started by renaming one, and spares are written full
//! of zeros ahead of need ([`prepare_spares`]). Appending to a file instead makes every sync
//! also commit the file's new size and blocks to the file system's journal: measured here,
//! that was about a third more kernel time per sync and a much longer tail. A reused file still
//! holds frames of its earlier life, so every segment starts with a header naming its number,
//! and every frame's checksum is seeded with that number: an old frame fails its check.
//!
//! Segment: `[4] magic "hwal", u8 format version, [3] zeros, u64 number`, then frames. Frame: `u32 payload_len, u64 xxh3(payload,
//! seed = number), payload`; payload: `u8 has_block [u64 key, u32 len, bytes], u8 has_records
//! [u64 key, u32 len, bytes]`. A frame cut short by a crash (short, empty, or failing its
//! checksum) ends the segment: it was never acknowledged.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::format::{self, FormatError, WAL_SEGMENT_VERSION};

/// Starts every segment.
const MAGIC: &[u8; 4] = b"hwal";

/// Bytes of the segment header: magic, format version, zeros, number.
const HEADER_BYTES: usize = 16;

/// The header of segment `number`.
fn header(number: u64) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..4].copy_from_slice(MAGIC);
    h[4] = WAL_SEGMENT_VERSION;
    h[8..].copy_from_slice(&number.to_le_bytes());
    h
}

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

    fn encode_into(&self, out: &mut Vec<u8>, seed: u64) {
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
        let sum = xxh3_64_with_seed(&out[at + 12..], seed);
        out[at..at + 4].copy_from_slice(&payload_len.to_le_bytes());
        out[at + 4..at + 12].copy_from_slice(&sum.to_le_bytes());
    }
}

/// Reads the frames of segment `number`, up to the first that is incomplete or damaged; a
/// segment in a format this herald does not know is an error.
fn decode_segment(number: u64, bytes: &[u8]) -> Result<Vec<Round>, FormatError> {
    let Some(head) = bytes.get(..HEADER_BYTES).filter(|h| h.starts_with(MAGIC)) else {
        // A zero-filled spare not written yet, or a header a crash cut short: nothing in it
        // was acknowledged.
        return Ok(Vec::new());
    };
    format::check("write-ahead log segment", WAL_SEGMENT_VERSION, &head[4..])?;
    let written_for = u64::from_le_bytes(head[8..].try_into().unwrap_or_default());
    Ok(match written_for == number {
        true => decode_frames(&bytes[HEADER_BYTES..], |p| xxh3_64_with_seed(p, number)),
        // A reused file whose header is still its earlier life's holds nothing yet.
        false => Vec::new(),
    })
}

/// [`decode_segment`], a format error as the I/O error of reading the segment.
fn read_decoded(number: u64, path: &Path) -> io::Result<Vec<Round>> {
    decode_segment(number, &fs::read(path)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads frames, checked with `checksum`, up to the first that is incomplete or damaged.
fn decode_frames(mut bytes: &[u8], checksum: impl Fn(&[u8]) -> u64) -> Vec<Round> {
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
        // Zeros (a spare written ahead) end the segment: no payload is empty.
        if n == 0 {
            break;
        }
        let Some(payload) = bytes.get(12..12 + n) else {
            break;
        };
        if checksum(payload) != sum {
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
        if let Some(n) = number_of(&path, "wal") {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The number in a file name `<number>.<extension>`.
fn number_of(path: &Path, extension: &str) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_suffix(extension)?
        .strip_suffix('.')?
        .parse()
        .ok()
}

/// The rounds kept in the segments of `dir`, oldest first.
pub fn read_all(dir: &Path) -> io::Result<Vec<(u64, Vec<Round>)>> {
    segments(dir)?
        .into_iter()
        .map(|(n, path)| Ok((n, read_decoded(n, &path)?)))
        .collect()
}

/// The rounds kept in segment `number` of `dir`.
pub fn read_segment(dir: &Path, number: u64) -> io::Result<Vec<Round>> {
    read_decoded(number, &segment_path(dir, number))
}

/// Spares kept at most: as many segments as the backlog of closed segments holds, so that a
/// long send that fills the backlog still writes over existing blocks.
pub const MAX_SPARES: usize = 4;

/// Retires segment `number` of `dir` (its rounds are in the database): kept as a spare for a
/// later segment while fewer than [`MAX_SPARES`] are kept, deleted otherwise.
pub fn remove_segment(dir: &Path, number: u64) -> io::Result<()> {
    let path = segment_path(dir, number);
    let result = match spares(dir)?.len() < MAX_SPARES {
        true => fs::rename(&path, dir.join(format!("{number:012}.spare"))),
        false => fs::remove_file(&path),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The spare files of `dir`.
fn spares(dir: &Path) -> io::Result<Vec<PathBuf>> {
    files_ending(dir, "spare")
}

/// The files of `dir` with the extension `extension`.
fn files_ending(dir: &Path, extension: &str) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == extension) {
            out.push(path);
        }
    }
    Ok(out)
}

/// Writes zero-filled spares of `bytes` each until `dir` holds [`MAX_SPARES`], each synced
/// before it is named a spare. Meant for a low-priority thread at start-up; an error only
/// means segments are appended to fresh files, as before spares existed.
pub fn prepare_spares(dir: &Path, bytes: u64) -> io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    // Left half-written by a crash.
    for path in files_ending(dir, "prep")? {
        fs::remove_file(path)?;
    }
    let mut made = 0u64;
    while spares(dir)?.len() < MAX_SPARES {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("z{stamp}-{made}");
        let prep = dir.join(format!("{name}.prep"));
        let mut file = File::create(&prep)?;
        let mut left = bytes;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
        fs::rename(&prep, dir.join(format!("{name}.spare")))?;
        made += 1;
    }
    Ok(())
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:012}.wal"))
}

/// The segment being written.
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
        // Above every number a segment or spare ever had, so that no frame left in a reused
        // file can pass for one of the new segment's.
        let spares = spares(dir)?;
        let last_spare = spares.iter().filter_map(|p| number_of(p, "spare")).max();
        let last = segments(dir)?.last().map(|(n, _)| *n).max(last_spare);
        let number = last.map_or(1, |n| n + 1);
        Wal::start(dir.to_path_buf(), number)
    }

    fn start(dir: PathBuf, number: u64) -> io::Result<Wal> {
        let path = segment_path(&dir, number);
        // A spare becomes the segment: its blocks exist, so syncs write data only.
        let reused = spares(&dir)?
            .into_iter()
            .any(|spare| fs::rename(spare, &path).is_ok());
        let file = match reused {
            true => OpenOptions::new().write(true).open(&path)?,
            false => OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?,
        };
        // The segment's directory entry must survive a crash before any round is in it.
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
        if self.bytes == 0 {
            self.frame.extend_from_slice(&header(self.number));
        }
        for round in rounds {
            round.encode_into(&mut self.frame, self.number);
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
        let first_len =
            u32::from_le_bytes(bytes[HEADER_BYTES..HEADER_BYTES + 4].try_into().unwrap());
        let second = HEADER_BYTES + 12 + first_len as usize;
        damaged[second + 20] ^= 0xff;
        fs::write(&path, &damaged).unwrap();
        assert_eq!(read_all(dir.path()).unwrap()[0].1, vec![round(1)]);
    }

    #[test]
    fn a_reused_segment_never_reads_its_earlier_frames() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path()).unwrap();
        wal.append(&(1..40).map(round).collect::<Vec<_>>()).unwrap();
        let old_len = wal.bytes();
        let first = wal.rotate().unwrap();
        // Applied: the segment becomes a spare, and the next segment is that file.
        remove_segment(dir.path(), first).unwrap();
        assert_eq!(spares(dir.path()).unwrap().len(), 1);
        let second = wal.rotate().unwrap();
        assert!(spares(dir.path()).unwrap().is_empty());
        let path = segment_path(dir.path(), wal.number());
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            old_len,
            "the spare was not reused"
        );
        // Before its first round, the reused file holds nothing for its new number.
        assert_eq!(read_segment(dir.path(), wal.number()).unwrap(), vec![]);
        wal.append(&[round(7)]).unwrap();
        assert_eq!(
            read_all(dir.path()).unwrap(),
            vec![(second, vec![]), (wal.number(), vec![round(7)])]
        );
        // A later writer numbers its segments above every spare's.
        remove_segment(dir.path(), wal.number()).unwrap();
        remove_segment(dir.path(), second).unwrap();
        let later = Wal::create(dir.path()).unwrap();
        assert!(later.number() > wal.number());
    }

    #[test]
    fn zero_filled_spares_are_written_over() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path()).unwrap();
        fs::write(dir.path().join("z1.prep"), b"half-written by a crash").unwrap();
        prepare_spares(dir.path(), 1 << 16).unwrap();
        assert_eq!(spares(dir.path()).unwrap().len(), MAX_SPARES);
        assert!(!dir.path().join("z1.prep").exists());
        let mut wal = Wal::create(dir.path()).unwrap();
        assert_eq!(read_segment(dir.path(), wal.number()).unwrap(), vec![]);
        wal.append(&[round(2), round(3)]).unwrap();
        let path = segment_path(dir.path(), wal.number());
        assert_eq!(fs::metadata(&path).unwrap().len(), 1 << 16);
        assert_eq!(read_all(dir.path()).unwrap()[0].1, vec![round(2), round(3)]);
    }

    #[test]
    fn a_segment_of_an_unknown_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path()).unwrap();
        wal.append(&[round(1)]).unwrap();
        let path = segment_path(dir.path(), wal.number());
        let mut bytes = fs::read(&path).unwrap();
        assert_eq!(bytes[4], WAL_SEGMENT_VERSION);
        bytes[4] = 7;
        fs::write(&path, &bytes).unwrap();
        let e = read_all(dir.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            e.to_string(),
            "write-ahead log segment: format version 7 is not known to this herald"
        );
        assert!(read_segment(dir.path(), wal.number()).is_err());
    }
}
