//! Large uploads in segments: REST+STOR at offsets into one file, on the
//! servers that pass a try with a scratch file first (remembered).

use std::time::Duration;

use async_trait::async_trait;

use super::FtpBackend;
use crate::backend::{Backend, FileWriter};
use crate::error::OpError;
use crate::path::RelPath;

/// What [`FtpBackend::try_segmented_write`] writes, as (offset, byte), in
/// this order: the first held open while the others are written whole.
const PROBE_WRITES: [(u64, u8); 3] = [(0, b'A'), (8, b'B'), (4, b'C')];
/// What the probe file must then hold.
const PROBE_EXPECTED: &[u8] = b"A\0\0\0C\0\0\0B";

impl FtpBackend {
    /// Tries out segments on this server with a scratch file beside `near`,
    /// as a segmented upload writes them: a STOR at 0 held open while a
    /// REST+STOR past the end and then one below it are written and
    /// finished; then the STOR ends. The file must read `A...C...B`. A
    /// server that cuts the file at a REST or at an upload's end, writes
    /// each upload to a file of its own and renames it over the name
    /// (pure-ftpd), or locks the file for a whole upload (vsftpd's
    /// `lock_upload_files`: the second upload waits, and the probe gives up
    /// after a few seconds) fails it, and gets whole-file uploads.
    async fn try_segmented_write(&self, near: &RelPath) -> Result<(), String> {
        let probe = crate::backend::temp::probe_path(near);
        let patience = self.inner.round_trip.unwrap_or_default().saturating_mul(20).max(Duration::from_secs(5));
        let tried = tokio::time::timeout(patience, async {
            let (first, rest) = PROBE_WRITES.split_first().expect("probe writes");
            let mut held = self.open_writer(&probe, first.0, false).await?;
            held.write(vec![first.1]).await?;
            for &(offset, byte) in rest {
                let mut writer = self.open_writer(&probe, offset, false).await?;
                writer.write(vec![byte]).await?;
                writer.finish(None).await?;
            }
            held.finish(None).await?;
            let mut reader = self.open_reader(&probe, 0, false, None).await?;
            let mut landed = Vec::new();
            loop {
                let chunk = reader.read(Vec::with_capacity(64)).await?;
                if chunk.is_empty() || landed.len() > 64 {
                    break;
                }
                landed.extend_from_slice(&chunk);
            }
            Ok::<_, OpError>(landed)
        })
        .await;
        let _ = self.remove_file(&probe).await;
        match tried {
            Err(_) => Err(format!("a second upload into one file waited more than {patience:?}")),
            Ok(Err(err)) => Err(err.to_string()),
            Ok(Ok(landed)) if landed == PROBE_EXPECTED => Ok(()),
            Ok(Ok(landed)) => Err(format!("writes at offsets left {landed:?} where {PROBE_EXPECTED:?} was written")),
        }
    }
}

/// Segments by REST+STOR, on the servers that pass a try
/// ([`FtpBackend::try_segmented_write`]).
#[async_trait]
impl crate::backend::SegmentedWrite for FtpBackend {
    /// Tried beside the first file to be written in segments (see
    /// [`FtpBackend::try_segmented_write`]), and remembered in the state
    /// database: a server that locks uploads makes the try wait seconds.
    async fn works(&self, near: &RelPath) -> bool {
        *self
            .inner
            .segmented_write
            .get_or_init(async || {
                let key = format!("ftp.segmented-write {}", self.inner.shown);
                let memory = self.inner.memory.as_ref();
                if let Some(memory) = memory
                    && let Some(known) = memory.0.recall(&key).await
                {
                    return known == "yes";
                }
                // Kept with its reason, for whoever wonders why not.
                let tried = self.try_segmented_write(near).await;
                if let Some(memory) = memory {
                    let known = match &tried {
                        Ok(()) => "yes".to_string(),
                        Err(why) => format!("no: {why}"),
                    };
                    memory.0.remember(&key, &known).await;
                }
                tried.is_ok()
            })
            .await
    }

    /// Nothing to make: the first segment's STOR creates the file (and
    /// truncates it) before the others open (see `segment_at_zero_truncates`).
    async fn create_sized(&self, _path: &RelPath, _size: u64) -> Result<(), OpError> {
        Ok(())
    }

    /// A STOR at 0, else REST+STOR: nothing is cut at either end on the
    /// servers that passed [`FtpBackend::try_segmented_write`].
    async fn open_write_segment(&self, path: &RelPath, offset: u64) -> Result<Box<dyn FileWriter>, OpError> {
        self.open_writer(path, offset, false).await
    }
}
