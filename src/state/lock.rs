//! One run per job at a time: an exclusive lock on `<state db>.lock`, held
//! for the life of the run and released by the kernel if the process dies.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::Error;

#[derive(Debug)]
pub struct JobLock {
    _file: File,
    path: PathBuf,
}

impl JobLock {
    /// Takes the lock or fails at once with [`Error::Locked`] naming the
    /// process that holds it.
    pub fn acquire(db_path: &Path) -> Result<JobLock, Error> {
        let path = super::suffixed(db_path, ".lock");
        let io = |context: &str, source| Error::Io { context: format!("{context} {}", path.display()), source };
        super::create_parent_dir(&path)?;
        let mut file = loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|e| io("open", e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = match holder.trim() {
                        "" => "another process".to_string(),
                        pid => format!("process {pid}"),
                    };
                    return Err(Error::Locked { lock_file: path, holder });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", e)),
            }
            // A run that removes its lock file (a job that never started)
            // does so while holding it: a lock taken on the removed file
            // guards nothing, so take the one now under the name.
            let held = file.metadata().map_err(|e| io("stat", e))?;
            match std::fs::metadata(&path) {
                Ok(named) if named.ino() == held.ino() && named.dev() == held.dev() => break file,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("stat", e)),
            }
        };
        file.set_len(0).map_err(|e| io("write", e))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| io("write", e))?;
        write!(file, "{}", std::process::id()).map_err(|e| io("write", e))?;
        Ok(JobLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_pid() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("job.db");
        let first = JobLock::acquire(&db).unwrap();
        match JobLock::acquire(&db) {
            Err(Error::Locked { holder, .. }) => assert_eq!(holder, format!("process {}", std::process::id())),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        JobLock::acquire(&db).unwrap();
    }
}
