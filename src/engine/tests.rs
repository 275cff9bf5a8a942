//! The engine against a real local backend wrapped to fail on demand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;

use super::*;
use crate::backend::local::LocalBackend;
use crate::backend::{Capabilities, Entry, FileReader, FileWriter, MissingRoot, Mtime};
use crate::engine::report::{OutputOptions, Verbosity};
use crate::error::ErrorKind;

/// A local backend whose reads fail with `kind` the first `failures` times.
struct Flaky {
    inner: LocalBackend,
    failures: AtomicU32,
    kind: ErrorKind,
}

#[async_trait]
impl Backend for Flaky {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn list_dir(&self, dir: &RelPath) -> Result<Vec<Entry>, OpError> {
        self.inner.list_dir(dir).await
    }
    async fn stat(&self, path: &RelPath) -> Result<Option<Entry>, OpError> {
        self.inner.stat(path).await
    }
    async fn open_read(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileReader>, OpError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(OpError::new(self.kind, "open", path, "injected failure"));
        }
        self.inner.open_read(path, offset).await
    }
    async fn open_write(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileWriter>, OpError> {
        self.inner.open_write(path, offset).await
    }
    async fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), OpError> {
        self.inner.rename(from, to).await
    }
    async fn remove_file(&self, path: &RelPath) -> Result<(), OpError> {
        self.inner.remove_file(path).await
    }
    async fn remove_dir(&self, path: &RelPath) -> Result<(), OpError> {
        self.inner.remove_dir(path).await
    }
    async fn mkdir(&self, path: &RelPath) -> Result<(), OpError> {
        self.inner.mkdir(path).await
    }
    async fn set_mtime(&self, path: &RelPath, mtime: Mtime) -> Result<(), OpError> {
        self.inner.set_mtime(path, mtime).await
    }
}

async fn copy_one_with(failures: u32, kind: ErrorKind, retries: u32) -> (Arc<Reporter>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (src_root, dst_root) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::create_dir_all(&src_root).unwrap();
    std::fs::write(src_root.join("f"), b"payload").unwrap();
    let src = Flaky {
        inner: LocalBackend::open(src_root, MissingRoot::Fail).await.unwrap(),
        failures: AtomicU32::new(failures),
        kind,
    };
    let dst = LocalBackend::open(dst_root, MissingRoot::Create).await.unwrap();
    let entry = src.stat(&RelPath::parse(b"f").unwrap()).await.unwrap().unwrap();
    let reporter = Arc::new(Reporter::new(OutputOptions { json: false, verbosity: Verbosity::Quiet }));
    let engine = Arc::new(Engine::new(
        Arc::new(src),
        Arc::new(dst),
        EngineConfig {
            concurrency: super::adapt::Concurrency::fixed(2),
            retries,
            bwlimit: None,
            bw_timetable: None,
            inplace: false,
            backup_dir: None,
            verify: false,
            fxp: false,
            segmenting: crate::commit::Segmenting::default(),
            timeout: std::time::Duration::from_secs(60),
            perms: Some(crate::perms::Perms::new(0o777)),
            owners: Default::default(),
            moving: None,
        },
        Arc::clone(&reporter),
        None,
    ));
    let plan = Plan { actions: vec![Action::Copy { src: entry, reason: Reason::New }], unchanged: 0 };
    engine.run(plan).await;
    (reporter, dir)
}

#[tokio::test(start_paused = true)]
async fn temporary_errors_are_retried_until_the_copy_succeeds() {
    let (reporter, dir) = copy_one_with(2, ErrorKind::Temporary, 3).await;
    let s = reporter.summary(std::time::Duration::ZERO);
    assert_eq!((s.files_transferred, s.errors, s.retries), (1, 0, 2));
    assert_eq!(std::fs::read(dir.path().join("dst/f")).unwrap(), b"payload");
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_fail_at_once_and_exhausted_retries_are_reported() {
    let (reporter, dir) = copy_one_with(1, ErrorKind::PermissionDenied, 3).await;
    let s = reporter.summary(std::time::Duration::ZERO);
    assert_eq!((s.files_transferred, s.errors, s.retries), (0, 1, 0));
    assert!(!dir.path().join("dst/f").exists());

    let (reporter, _dir) = copy_one_with(5, ErrorKind::Temporary, 2).await;
    let s = reporter.summary(std::time::Duration::ZERO);
    assert_eq!((s.files_transferred, s.errors, s.retries), (0, 1, 2));
}
