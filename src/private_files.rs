//! The data directory holds personal data (the snapshot has every phone number, the
//! database every job's audience): it and everything herald writes in it are private to the
//! user herald runs as. Prepared once at start, before anything is written there.

use std::io;
use std::path::Path;

/// Makes `dir` ready and private: files the process creates from now on are `0600` and
/// directories `0700` (the umask covers files other libraries create, the embedded
/// database's included); `dir` is created `0700` when missing, and an existing one, with
/// everything in it, loses any access for group and others it had.
pub fn prepare(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;

        // SAFETY: umask only swaps the process's file-creation mask; it cannot fail.
        unsafe {
            libc::umask(0o077);
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        tighten(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Removes group and other access from `path` and, for a directory, from everything in it.
/// Symbolic links are left alone (their target may be anywhere).
#[cfg(unix)]
fn tighten(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;

    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !0o077))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            tighten(&entry?.path())?;
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::prepare;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn an_open_directory_and_its_files_are_tightened() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(dir.join("snapshot")).expect("dirs");
        std::fs::write(dir.join("snapshot/current.data"), "c0,+8613123000000").expect("file");
        for (p, m) in [
            (dir.clone(), 0o755),
            (dir.join("snapshot"), 0o775),
            (dir.join("snapshot/current.data"), 0o644),
        ] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).expect("chmod");
        }
        prepare(&dir).expect("prepare");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("snapshot")), 0o700);
        assert_eq!(mode(&dir.join("snapshot/current.data")), 0o600);
        let new = dir.join("new");
        std::fs::write(&new, "x").expect("new file");
        assert_eq!(mode(&new), 0o600);
    }
}
