//! `--shard-depth`: a destination directory above the depth that the
//! source lacks holds entries of several shards. The shard that owns the
//! directory removes it whole, listing it itself (its own listing left out
//! what other shards own); the others remove their parts at the same time,
//! so an entry already gone is no error.

use super::Engine;
use crate::error::{ErrorKind, OpError};
use crate::path::RelPath;

impl Engine {
    /// Removes `dir` and everything in it, deepest first.
    pub(super) async fn remove_tree(&self, dir: &RelPath) -> Result<(), OpError> {
        let gone = |result: Result<(), OpError>| match result {
            Err(err) if err.kind == ErrorKind::NotFound => Ok(()),
            other => other,
        };
        let (mut pending, mut dirs) = (vec![dir.clone()], Vec::new());
        while let Some(next) = pending.pop() {
            let entries = match self.dst.list_dir(&next).await {
                Err(err) if err.kind == ErrorKind::NotFound => Vec::new(),
                listed => listed?,
            };
            for entry in entries {
                if entry.is_dir() {
                    pending.push(entry.path);
                } else {
                    gone(self.dst.remove_file(&entry.path).await)?;
                }
            }
            dirs.push(next);
        }
        for dir in dirs.iter().rev() {
            gone(self.dst.remove_dir(dir).await)?;
        }
        Ok(())
    }
}
