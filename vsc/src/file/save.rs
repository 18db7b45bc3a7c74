//! Atomic, durable writing of a VSC file.
//!
//! 1. create `.<name>.<random>.tmp` in the target's directory, exclusively,
//!    mode 0600 (it holds wrapped secrets);
//! 2. write all bytes;
//! 3. `fsync` the temporary file;
//! 4. rename it over the target (or, for a new file, hard-link it to the
//!    target, which fails if the target exists, and remove the temporary
//!    name);
//! 5. `fsync` the directory, so the rename itself is durable.
//!
//! A failure before step 4 removes the temporary file and leaves the target
//! as it was. A crash at any point leaves the target either the old or the
//! new complete file (at worst a stray temporary file beside it).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::error::{IoOp, VscError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SaveMode {
    /// Replace the target if it exists.
    Replace,
    /// Fail if the target exists.
    CreateNew,
}

/// The points where a test can interrupt a save: the hook runs just before
/// each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SaveStep {
    CreateTemp,
    WriteFirstHalf,
    WriteRest,
    SyncFile,
    /// Rename (replace) or link (new file).
    Publish,
    /// Removing the temporary name after a link (new files only).
    RemoveTemp,
    SyncDir,
}

/// What an injected fault does.
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Injected {
    /// The step fails with this error; the save cleans up as it would.
    Fail(io::Error),
    /// The process dies here: no cleanup at all.
    Crash,
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: SaveMode) -> Result<(), VscError> {
    write_with_hooks(path, bytes, mode, &mut |_| Ok(()))
}

fn op_of(step: SaveStep, mode: SaveMode) -> IoOp {
    match step {
        SaveStep::Publish if mode == SaveMode::CreateNew => IoOp::Link,
        SaveStep::CreateTemp => IoOp::CreateTemp,
        SaveStep::WriteFirstHalf | SaveStep::WriteRest => IoOp::Write,
        SaveStep::SyncFile => IoOp::SyncFile,
        SaveStep::Publish => IoOp::Rename,
        SaveStep::RemoveTemp => IoOp::RemoveTemp,
        SaveStep::SyncDir => IoOp::SyncDir,
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// The save with a hook before every step.
pub(crate) fn write_with_hooks(
    path: &Path,
    bytes: &[u8],
    mode: SaveMode,
    hook: &mut dyn FnMut(SaveStep) -> Result<(), Injected>,
) -> Result<(), VscError> {
    let name = path
        .file_name()
        .ok_or_else(|| VscError::invalid("path", format!("{} does not name a file", path.display())))?;
    let dir: PathBuf = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{:016x}.tmp", rand::random::<u64>()));
    let temp = dir.join(temp_name);

    // Runs the hook, then the step; on failure removes the temporary file
    // unless the fault was a crash or the file is already published.
    let mut run = |step: SaveStep, temp_exists: bool, f: &mut dyn FnMut() -> io::Result<()>| {
        let result = match hook(step) {
            Ok(()) => f(),
            Err(Injected::Fail(e)) => Err(e),
            Err(Injected::Crash) => {
                return Err(VscError::io(
                    path,
                    op_of(step, mode),
                    io::Error::other("simulated crash"),
                ));
            }
        };
        result.map_err(|e| {
            if temp_exists {
                let _ = fs::remove_file(&temp);
            }
            VscError::io(path, op_of(step, mode), e)
        })
    };

    let mut file: Option<File> = None;
    run(SaveStep::CreateTemp, false, &mut || {
        file = Some(create_private(&temp)?);
        Ok(())
    })?;
    let temp_exists = true;
    let mut file = file.ok_or_else(|| VscError::io(path, IoOp::CreateTemp, io::Error::other("no file")))?;
    let half = bytes.len() / 2;
    let (first, rest) = bytes.split_at_checked(half).unwrap_or((bytes, &[]));
    run(SaveStep::WriteFirstHalf, temp_exists, &mut || {
        file.write_all(first)
    })?;
    run(SaveStep::WriteRest, temp_exists, &mut || file.write_all(rest))?;
    run(SaveStep::SyncFile, temp_exists, &mut || file.sync_all())?;
    drop(file);
    match mode {
        SaveMode::Replace => {
            run(SaveStep::Publish, temp_exists, &mut || fs::rename(&temp, path))?;
        }
        SaveMode::CreateNew => {
            run(SaveStep::Publish, temp_exists, &mut || fs::hard_link(&temp, path))?;
            // The target holds the new file now; a failure to remove the
            // temporary name leaves a stray file, not a broken target.
            run(SaveStep::RemoveTemp, false, &mut || fs::remove_file(&temp))?;
        }
    }
    run(SaveStep::SyncDir, false, &mut || sync_dir(&dir))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::file::{NewVsc, Protector, Unlock, Vsc};
    use crate::secret::AesKey;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const STEPS: [SaveStep; 7] = [
        SaveStep::CreateTemp,
        SaveStep::WriteFirstHalf,
        SaveStep::WriteRest,
        SaveStep::SyncFile,
        SaveStep::Publish,
        SaveStep::RemoveTemp,
        SaveStep::SyncDir,
    ];

    fn kek() -> AesKey {
        AesKey::from_slice(&[0x42; 32]).unwrap()
    }

    fn unlock() -> Unlock {
        Unlock::Kek {
            key_id: "test/1".into(),
            key: kek(),
        }
    }

    fn two_versions(rng: &mut StdRng) -> (Vec<u8>, Vec<u8>) {
        let p = Protector::Kek {
            key_id: "test/1".into(),
            key: kek(),
        };
        let mut v = Vsc::create(NewVsc::new("VSC 00000001", "test", 1_700_000_000), &p, rng).unwrap();
        let old = v.to_bytes(rng).unwrap();
        v.set_state(crate::file::State::Disabled);
        let new = v.to_bytes(rng).unwrap();
        (old, new)
    }

    fn stray_files(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "card.vsc")
            .collect()
    }

    fn steps_of(mode: SaveMode) -> Vec<SaveStep> {
        STEPS
            .into_iter()
            .filter(|s| mode == SaveMode::CreateNew || *s != SaveStep::RemoveTemp)
            .collect()
    }

    #[test]
    fn injected_failure_at_every_step_keeps_the_previous_file() {
        let mut rng = StdRng::seed_from_u64(1);
        let (old, new) = two_versions(&mut rng);
        for step in steps_of(SaveMode::Replace) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("card.vsc");
            fs::write(&path, &old).unwrap();
            let err = write_with_hooks(&path, &new, SaveMode::Replace, &mut |s| {
                if s == step {
                    Err(Injected::Fail(io::Error::other("injected")))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
            assert!(
                matches!(err, VscError::Io { op, .. } if op == op_of(step, SaveMode::Replace)),
                "{step:?}: {err}"
            );
            let now = fs::read(&path).unwrap();
            if step == SaveStep::SyncDir {
                // Renamed already: the new file is complete and in place.
                assert_eq!(now, new, "{step:?}");
            } else {
                assert_eq!(now, old, "{step:?}: previous file changed");
                assert!(stray_files(dir.path()).is_empty(), "{step:?}: temp file left");
            }
            let v = Vsc::load(&path, &unlock()).unwrap();
            assert_eq!(v.header().label, "VSC 00000001");
        }
    }

    #[test]
    fn simulated_crash_at_every_step_leaves_old_or_new() {
        let mut rng = StdRng::seed_from_u64(2);
        let (old, new) = two_versions(&mut rng);
        for mode in [SaveMode::Replace, SaveMode::CreateNew] {
            for step in steps_of(mode) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("card.vsc");
                if mode == SaveMode::Replace {
                    fs::write(&path, &old).unwrap();
                }
                let r = write_with_hooks(&path, &new, mode, &mut |s| {
                    if s == step {
                        Err(Injected::Crash)
                    } else {
                        Ok(())
                    }
                });
                assert!(r.is_err());
                match fs::read(&path) {
                    Ok(now) => {
                        assert!(now == old || now == new, "{mode:?} {step:?}: torn file");
                        Vsc::load(&path, &unlock()).unwrap();
                    }
                    Err(e) => {
                        // A new file that was never published.
                        assert_eq!(mode, SaveMode::CreateNew);
                        assert_eq!(e.kind(), io::ErrorKind::NotFound);
                        assert!(matches!(
                            step,
                            SaveStep::CreateTemp
                                | SaveStep::WriteFirstHalf
                                | SaveStep::WriteRest
                                | SaveStep::SyncFile
                                | SaveStep::Publish
                        ));
                    }
                }
            }
        }
    }

    #[test]
    fn create_new_refuses_an_existing_file_and_cleans_up() {
        let mut rng = StdRng::seed_from_u64(3);
        let (old, new) = two_versions(&mut rng);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.vsc");
        fs::write(&path, &old).unwrap();
        let err = write_atomically(&path, &new, SaveMode::CreateNew).unwrap_err();
        assert!(matches!(&err, VscError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists));
        assert_eq!(fs::read(&path).unwrap(), old);
        assert!(stray_files(dir.path()).is_empty());
        let fresh = dir.path().join("other.vsc");
        write_atomically(&fresh, &new, SaveMode::CreateNew).unwrap();
        assert_eq!(fs::read(&fresh).unwrap(), new);
    }

    #[cfg(unix)]
    #[test]
    fn saved_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let mut rng = StdRng::seed_from_u64(4);
        let (old, _) = two_versions(&mut rng);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.vsc");
        write_atomically(&path, &old, SaveMode::Replace).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
