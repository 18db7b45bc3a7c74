//! Durable file operations: "durable" means the file's data AND the
//! directory entry that names it are on stable storage (fsync of the file,
//! then of its directory).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The directory a path lives in (`.` for a bare name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsync of a directory, so that entries created, renamed or removed in it
/// survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and missing parents) with `mode`; every directory created
/// is made durable in its parent. An existing directory is left as it is.
pub(crate) fn create_dir_durable(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = parent_dir(dir);
    if !parent.is_dir() {
        create_dir_durable(&parent, mode)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(&parent)
}

/// Creates `path` exclusively (it must not exist) with `mode`, writes
/// `bytes`, and makes file and directory entry durable. On a failure after
/// the file was created, the partial file is removed.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(e);
    }
    sync_dir(&parent_dir(path))
}

/// Replaces (or creates) `path` atomically: a temporary file beside it is
/// written and fsynced, renamed over `path`, and the directory fsynced when
/// `sync_parent` (without it the rename may be lost in a crash, leaving the
/// old complete file).
pub(crate) fn write_replace(path: &Path, bytes: &[u8], mode: u32, sync_parent: bool) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{:016x}.tmp", rand::random::<u64>()));
    let temp = dir.join(temp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    if sync_parent {
        sync_dir(&dir)?;
    }
    Ok(())
}

/// fsync of every regular file under `dir` (recursively), then of each
/// directory. sled's own `flush` on Linux uses `sync_file_range`, which
/// neither writes the file's metadata nor flushes the disk's cache; this
/// makes what it wrote durable in the strict sense.
pub(crate) fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        } else if kind.is_file() {
            match File::open(entry.path()) {
                Ok(f) => f.sync_all()?,
                // sled may remove a file (an old snapshot) meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    sync_dir(dir)
}

/// Whether a file name is one of the temporary names [`write_replace`] and
/// the archive use (`.<name>.<16 hex>.tmp`).
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_new_refuses_an_existing_file_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        write_new(&p, b"one", 0o600).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let e = write_new(&p, b"two", 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"one");
    }

    #[test]
    fn write_replace_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("head");
        write_replace(&p, b"1", 0o644, true).unwrap();
        write_replace(&p, b"2", 0o644, false).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"2");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn create_dir_durable_makes_parents() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/c");
        create_dir_durable(&p, 0o700).unwrap();
        assert!(p.is_dir());
        create_dir_durable(&p, 0o700).unwrap();
        assert!(is_temp_name(".x.0123.tmp") && !is_temp_name("x.vsc"));
    }
}
