//! A job's identity: which state database (history, hold-backs, lock) a
//! run belongs to. It is read from the canonical form of both roots, so
//! every spelling of one pair — `S` and `S/`, `./S`, a symbolic link to
//! it, `ftp://h/x` and `ftp://user@H:21/x/`, `NAME:path` and the URL it
//! stands for — is one job with one database and one lock. Databases named
//! under the earlier rule (the path or URL as typed) are adopted once.

use std::path::{Path, PathBuf};

use super::{Job, Mode};
use crate::backend::{self, RemoteOptions};
use crate::engine::report::Reporter;
use crate::error::Error;
use crate::location::Location;
use crate::state::{self, JobLock, run_blocking};

/// Both roots in canonical form, remote logins resolved the way the
/// backends will log in.
pub(super) struct Roots {
    pub src: Location,
    pub dst: Location,
}

/// Canonical roots of `job`: one `realpath` per local root and reads of
/// ~/.ssh/config and ~/.netrc, no connection.
pub(super) async fn canonical_roots(job: &Job) -> Result<Roots, Error> {
    let (src, dst) = (job.src.clone(), job.dst.clone());
    let (src_options, dst_options) = (job.src_remote.clone(), job.dst_remote.clone());
    run_blocking(move || Ok(Roots { src: canonical(&src, &src_options), dst: canonical(&dst, &dst_options) })).await
}

fn canonical(location: &Location, options: &RemoteOptions) -> Location {
    match location {
        Location::Local(_) => location.canonical(),
        // The login first: ~/.ssh/config's Port applies only where the URL
        // wrote none, which normalizing would hide.
        Location::Remote(remote) => Location::Remote(backend::login_location(remote, options).normalized()),
    }
}

/// Where a job's state is kept.
pub(super) struct StatePath {
    pub path: PathBuf,
    /// A database of this job under its earlier name, when `path` does
    /// not exist yet.
    earlier: Option<PathBuf>,
    /// `--state FILE` named it (else XDG_STATE_HOME did).
    explicit: bool,
}

/// `--state FILE`, else the default database named after both canonical
/// roots (and the shard: shards of one job run side by side, each with
/// its own database).
pub(super) fn state_path(job: &Job, roots: &Roots) -> Result<StatePath, Error> {
    if let Some(path) = &job.state_path {
        let state = StatePath { path: path.clone(), earlier: None, explicit: true };
        return state.usable();
    }
    let shard = shard_suffix(job);
    let named = |src: &str, dst: &str| state::default_path(src, &format!("{dst}{shard}"));
    let path = named(&identity(&roots.src), &identity(&roots.dst))?;
    if path.exists() {
        return StatePath { path, earlier: None, explicit: false }.usable();
    }
    // The earlier rule named a database after the spelling: the one typed
    // now, or the plain one most runs were started with.
    let typed = named(&job.src.legacy_identity(), &job.dst.legacy_identity())?;
    let plain = named(&job.src.canonical().legacy_identity(), &job.dst.canonical().legacy_identity())?;
    let earlier = [typed, plain].into_iter().find(|p| p.exists());
    StatePath { path, earlier, explicit: false }.usable()
}

/// Shards of one job run side by side, each with its own database.
fn shard_suffix(job: &Job) -> String {
    job.filter
        .shard()
        .map(|s| match s.depth {
            1 => format!("#shard-{}-of-{}", s.index, s.count),
            depth => format!("#shard-{}-of-{}-depth-{depth}", s.index, s.count),
        })
        .unwrap_or_default()
}

/// The lock a sync also takes once both sides are open, when the roots as
/// their servers resolve them ([`crate::backend::Backend::resolved_root`])
/// are not the canonical ones: the default database's lock for the
/// resolved roots, which is the lock a run of the plain spelling holds.
/// `sftp://h/~/d` and `sftp://h/home/me/d` are one job and must not run at
/// once (each took its own lock and wrote the same temporaries).
pub(super) fn resolved_lock_path(
    job: &Job,
    roots: &Roots,
    resolved: (Option<Vec<u8>>, Option<Vec<u8>>),
) -> Option<PathBuf> {
    let side = |canonical: &Location, resolved: Option<Vec<u8>>| match (canonical, resolved) {
        (Location::Remote(remote), Some(path)) => {
            let mut remote = remote.clone();
            remote.path = path;
            identity(&Location::Remote(remote))
        }
        _ => identity(canonical),
    };
    let (src, dst) = (side(&roots.src, resolved.0), side(&roots.dst, resolved.1));
    if src == identity(&roots.src) && dst == identity(&roots.dst) {
        return None;
    }
    // The database name the plain spelling has: its lock is this lock.
    state::default_path(&src, &format!("{dst}{}", shard_suffix(job))).ok()
}

/// The text a job's database is named after: no secret in it.
fn identity(canonical: &Location) -> String {
    match canonical {
        Location::Local(path) => format!("file://{}", path.display()),
        Location::Remote(remote) => remote.to_string(),
    }
}

impl StatePath {
    /// Refuses a path that cannot hold a database before anything touches
    /// it: a directory, or a device such as /dev/null (which opening and
    /// chmod 0600 would break for everyone else).
    fn usable(self) -> Result<StatePath, Error> {
        match std::fs::metadata(&self.path) {
            Ok(meta) if meta.is_file() => Ok(self),
            Ok(meta) => {
                let what = if meta.is_dir() { "a directory" } else { "not a regular file" };
                Err(self.unusable(&format!("it is {what}")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(self),
            Err(e) => Err(self.unusable(&e.to_string())),
        }
    }

    /// A usage error naming where the path came from and the way out.
    pub fn unusable(&self, why: &str) -> Error {
        let fix = match self.explicit {
            true => "give --state a file in a directory you can write",
            false => "set XDG_STATE_HOME to a directory you can write, or give --state FILE",
        };
        Error::Usage(format!("cannot keep the job's state database at {}: {why}; {fix}", self.path.display()))
    }

    /// `err` (from taking the lock or opening the database) as a usage
    /// error when the place itself is wrong (permission, not a directory,
    /// read-only); other errors as they are.
    pub fn explain(&self, err: Error) -> Error {
        match err {
            Error::Io { source, .. }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::PermissionDenied
                        | std::io::ErrorKind::ReadOnlyFilesystem
                        | std::io::ErrorKind::NotADirectory
                        | std::io::ErrorKind::IsADirectory
                        | std::io::ErrorKind::NotFound
                ) =>
            {
                self.unusable(&source.to_string())
            }
            Error::State { source, .. }
                if matches!(
                    source.sqlite_error_code(),
                    Some(
                        rusqlite::ErrorCode::CannotOpen
                            | rusqlite::ErrorCode::ReadOnly
                            | rusqlite::ErrorCode::PermissionDenied
                    )
                ) =>
            {
                self.unusable(&source.to_string())
            }
            other => other,
        }
    }

    /// The database a run reads: a sync (holding `lock` on the new name)
    /// adopts one under the earlier name by renaming it; `plan` and
    /// `check` change nothing and read it where it is.
    pub async fn adopt_earlier(&self, mode: Mode, reporter: &Reporter) -> Result<PathBuf, Error> {
        let Some(earlier) = &self.earlier else { return Ok(self.path.clone()) };
        if mode != Mode::Sync {
            return Ok(earlier.clone());
        }
        let (from, to) = (earlier.clone(), self.path.clone());
        run_blocking(move || adopt(&from, &to)).await?;
        reporter.info(&format!(
            "state database {} renamed to {} (job names no longer depend on how a path is written)",
            earlier.display(),
            self.path.display()
        ));
        Ok(self.path.clone())
    }
}

/// Moves a database (and its sqlite companions) from `from` to `to`,
/// holding the earlier name's lock so a run of an older barge under it is
/// never pulled from under its feet (that is exit 4, as for any running job).
fn adopt(from: &Path, to: &Path) -> Result<(), Error> {
    let earlier_lock = JobLock::acquire(from)?;
    for suffix in ["", "-wal", "-shm"] {
        let (old, new) = (state::suffixed(from, suffix), state::suffixed(to, suffix));
        match std::fs::rename(&old, &new) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !suffix.is_empty() => {}
            Err(source) => {
                return Err(Error::Io { context: format!("rename {} to {}", old.display(), new.display()), source });
            }
        }
    }
    // The mark of a clean close speaks of the old name only.
    let _ = std::fs::remove_file(state::suffixed(from, ".clean"));
    let _ = std::fs::remove_file(earlier_lock.path());
    Ok(())
}
