//! Control connections to one server, pooled and reused across files.
//!
//! At most `max` connections exist at once (a semaphore). A connection goes
//! back to the pool when its user drops it, unless it was marked broken; one
//! idle for long is checked with NOOP before reuse and replaced if dead.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use suppaftp::Status;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conn::{ConnectParams, FtpConn, connect};
use crate::error::OpError;

/// Idle connections older than this are checked (NOOP) before reuse.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(15);
/// Idle connections older than this are closed rather than reused.
const CLOSE_AFTER_IDLE: Duration = Duration::from_secs(120);

pub struct Pool {
    params: ConnectParams,
    idle: Mutex<Vec<FtpConn>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    pub fn new(params: ConnectParams, max: usize) -> Arc<Pool> {
        Arc::new(Pool { params, idle: Mutex::new(Vec::new()), permits: Arc::new(Semaphore::new(max.max(1))) })
    }

    pub fn params(&self) -> &ConnectParams {
        &self.params
    }

    /// Puts a fresh connection (the one opened to check the login) in the pool.
    pub fn give(&self, conn: FtpConn) {
        self.lock_idle().push(conn);
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<FtpConn>> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A live, logged-in connection for exclusive use until dropped.
    pub async fn get(self: &Arc<Self>) -> Result<Pooled, OpError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| OpError::new(crate::error::ErrorKind::Other, "connect", &self.params.host, "pool closed"))?;
        loop {
            let candidate = self.lock_idle().pop();
            let Some(mut conn) = candidate else { break };
            let idle = conn.last_used.elapsed();
            if idle > CLOSE_AFTER_IDLE {
                continue;
            }
            if idle > CHECK_AFTER_IDLE && conn.control.custom_command("NOOP", &[Status::CommandOk]).await.is_err() {
                continue;
            }
            return Ok(Pooled { conn: Some(conn), pool: Arc::clone(self), broken: false, _permit: permit });
        }
        let conn = connect(&self.params).await?;
        Ok(Pooled { conn: Some(conn), pool: Arc::clone(self), broken: false, _permit: permit })
    }
}

/// A connection on loan from the pool.
pub struct Pooled {
    conn: Option<FtpConn>,
    pool: Arc<Pool>,
    broken: bool,
    _permit: OwnedSemaphorePermit,
}

impl Pooled {
    pub fn conn(&mut self) -> &mut FtpConn {
        // Only `Drop` takes the connection out.
        self.conn.as_mut().unwrap_or_else(|| unreachable!("connection used after drop"))
    }

    /// The connection is in an unknown state (an I/O error, a timeout, a
    /// transfer abandoned midway): close it instead of reusing it.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take()
            && !self.broken
        {
            conn.last_used = Instant::now();
            self.pool.lock_idle().push(conn);
        }
    }
}
