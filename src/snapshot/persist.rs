//! The snapshot on disk, so a restart does not leave jobs waiting for ops to upload it again:
//! every accepted upload is kept as it arrived (`current.data` with `current.json` naming its
//! format and `as_of`), and every accepted patch is appended to `patches.ndjson`. On start the
//! kept upload is loaded with its original `as_of` (freshness is still judged from it) and the
//! patches are applied again, in order.
//!
//! Uploads are copied to a `.partial` file while they are read and renamed into place only
//! after the snapshot loaded and was swapped in, so a failed, refused or interrupted upload
//! never replaces the kept one (its copy is dropped).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{load_csv, load_ndjson, LoadReport, SnapshotError, SnapshotStore};
use crate::phone::RegionCode;

/// The format of a kept upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadFormat {
    Csv,
    Ndjson,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: UploadFormat,
    as_of: DateTime<Utc>,
}

/// The snapshot directory inside the data directory.
#[derive(Debug, Clone)]
pub struct SnapshotFiles {
    dir: PathBuf,
}

/// A reader that copies everything read through it into a file.
pub struct Tee<R> {
    inner: R,
    copy: BufWriter<File>,
    path: PathBuf,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl<R> Tee<R> {
    fn finish(self) -> io::Result<()> {
        let file = self.copy.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }
}

impl SnapshotFiles {
    /// The files under `data_dir/snapshot` (created if missing). Copies of uploads that were
    /// being read when the process stopped are removed.
    pub fn new(data_dir: &Path) -> io::Result<SnapshotFiles> {
        let dir = data_dir.join("snapshot");
        fs::create_dir_all(&dir)?;
        for entry in fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("upload") && name.ends_with(".partial") {
                fs::remove_file(dir.join(&*name))?;
            }
        }
        Ok(SnapshotFiles { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Wraps an upload so that it is copied aside while it is read. Each upload has a copy of
    /// its own, so two uploads at once never write into (or remove) each other's.
    pub fn tee_upload<R: Read>(&self, reader: R) -> io::Result<Tee<R>> {
        let path = self.path(&format!("upload-{}.partial", uuid::Uuid::now_v7().simple()));
        Ok(Tee {
            inner: reader,
            copy: BufWriter::with_capacity(1 << 20, File::create(&path)?),
            path,
        })
    }

    /// Keeps the upload read through `tee` as the current snapshot (it was swapped in), and
    /// drops the patches of the previous one.
    pub fn keep_upload<R>(
        &self,
        tee: Tee<R>,
        format: UploadFormat,
        as_of: DateTime<Utc>,
    ) -> io::Result<()> {
        let partial = tee.path.clone();
        tee.finish()?;
        fs::rename(partial, self.path("current.data"))?;
        let meta = serde_json::to_vec(&Meta { format, as_of })?;
        write_atomically(&self.path("current.json"), &meta)?;
        match fs::remove_file(self.path("patches.ndjson")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        sync_dir(&self.dir)
    }

    /// Drops the copy of an upload that was not installed (it failed to load or was
    /// refused): the kept snapshot stays as it was, and the copy does not hold disk space.
    pub fn discard_upload<R>(&self, tee: Tee<R>) -> io::Result<()> {
        let path = tee.path.clone();
        drop(tee);
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Wraps a patch so that it is copied aside while it is read.
    pub fn tee_patch<R: Read>(&self, reader: R) -> io::Result<Tee<R>> {
        let path = self.path("patch.partial");
        Ok(Tee {
            inner: reader,
            copy: BufWriter::new(File::create(&path)?),
            path,
        })
    }

    /// Appends the patch read through `tee` (it was applied) to the kept patches.
    pub fn keep_patch<R>(&self, tee: Tee<R>) -> io::Result<()> {
        let partial = tee.path.clone();
        tee.finish()?;
        let mut patch = File::open(&partial)?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("patches.ndjson"))?;
        io::copy(&mut patch, &mut log)?;
        // A patch that did not end its last line must not run into the next one.
        log.write_all(b"\n")?;
        log.sync_all()?;
        drop(patch);
        fs::remove_file(partial)
    }

    /// Loads the kept snapshot and its patches into `store`; answers its report, or None when
    /// nothing was kept.
    pub fn restore(
        &self,
        store: &SnapshotStore,
        region: RegionCode,
    ) -> Result<Option<LoadReport>, SnapshotError> {
        let meta = match fs::read(self.path("current.json")) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let meta: Meta = serde_json::from_slice(&meta)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let data = BufReader::with_capacity(1 << 20, File::open(self.path("current.data"))?);
        let (snapshot, report) = match meta.format {
            UploadFormat::Csv => load_csv(data, meta.as_of, region)?,
            UploadFormat::Ndjson => load_ndjson(data, meta.as_of, region)?,
        };
        store.replace(snapshot)?;
        match File::open(self.path("patches.ndjson")) {
            Ok(f) => {
                store.apply_patch(BufReader::new(f))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Some(report))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(tmp, path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CN: RegionCode = RegionCode(*b"CN");

    #[test]
    fn a_kept_upload_and_its_patches_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotFiles::new(dir.path()).unwrap();
        let as_of: DateTime<Utc> = "2026-11-23T01:00:00Z".parse().unwrap();
        let csv =
            "contact_id,phone,sms_consent\nc1,+8613123079337,opt_in\nc2,+8613123079338,opt_in\n";
        let store = SnapshotStore::empty(CN);
        let mut tee = files.tee_upload(csv.as_bytes()).unwrap();
        let (snap, _) = load_csv(&mut tee, as_of, CN).unwrap();
        store.replace(snap).unwrap();
        files.keep_upload(tee, UploadFormat::Csv, as_of).unwrap();
        let patch = "{\"contact_id\":\"c3\",\"phone\":\"+8613123079339\"}\n{\"contact_id\":\"c1\",\"deleted\":true}";
        let mut tee = files.tee_patch(patch.as_bytes()).unwrap();
        store.apply_patch(BufReader::new(&mut tee)).unwrap();
        files.keep_patch(tee).unwrap();

        let restored = SnapshotStore::empty(CN);
        let report = files.restore(&restored, CN).unwrap().expect("kept");
        assert_eq!(report.contacts, 2);
        let snap = restored.current();
        assert_eq!(snap.as_of(), as_of);
        assert!(snap.lookup("c1").is_none(), "the delete was replayed");
        assert!(snap.lookup("c2").is_some());
        assert!(snap.lookup("c3").is_some(), "the upsert was replayed");

        // A failed upload leaves the kept one in place, and its copy is dropped.
        let abandoned = files.tee_upload("garbage".as_bytes()).unwrap();
        files.discard_upload(abandoned).unwrap();
        let left: Vec<_> = fs::read_dir(dir.path().join("snapshot"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".partial"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        let again = SnapshotStore::empty(CN);
        assert!(files.restore(&again, CN).unwrap().is_some());
        assert!(again.current().lookup("c2").is_some());
    }

    #[test]
    fn nothing_kept_restores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotFiles::new(dir.path()).unwrap();
        assert!(files
            .restore(&SnapshotStore::empty(CN), CN)
            .unwrap()
            .is_none());
    }
}
