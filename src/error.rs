//! Typed errors. Backends report an [`OpError`] carrying a [`ErrorKind`]; the
//! engine's retry logic reads only [`OpError::is_temporary`]. A whole run
//! fails with an [`Error`], which knows its process exit code.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What went wrong, as far as deciding what to do next is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    PermissionDenied,
    AlreadyExists,
    /// No space left on the destination (or quota exceeded).
    NoSpace,
    /// Worth retrying: interrupted, timed out, connection reset, server busy.
    Temporary,
    /// The server could not be reached.
    Connect,
    /// The server refused our credentials.
    Auth,
    /// The backend cannot do this at all.
    Unsupported,
    /// A name or reply that cannot be used (hostile name, malformed listing).
    InvalidData,
    /// The source changed while it was being read.
    SourceChanged,
    Other,
}

impl ErrorKind {
    pub fn from_io(kind: io::ErrorKind) -> Self {
        use io::ErrorKind as K;
        match kind {
            K::NotFound => ErrorKind::NotFound,
            K::PermissionDenied | K::ReadOnlyFilesystem => ErrorKind::PermissionDenied,
            K::AlreadyExists | K::DirectoryNotEmpty => ErrorKind::AlreadyExists,
            K::StorageFull | K::QuotaExceeded | K::FileTooLarge => ErrorKind::NoSpace,
            K::Interrupted
            | K::WouldBlock
            | K::TimedOut
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::ResourceBusy => ErrorKind::Temporary,
            K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable => ErrorKind::Connect,
            K::InvalidData | K::InvalidFilename => ErrorKind::InvalidData,
            K::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Other,
        }
    }
}

/// One failed backend operation, with the operation and path it concerned.
#[derive(Debug, thiserror::Error)]
pub struct OpError {
    pub kind: ErrorKind,
    /// What was being done: "list", "read", "write", "rename", ...
    pub op: &'static str,
    /// The path concerned, already escaped for display.
    pub path: String,
    pub message: String,
    #[source]
    pub source: Option<io::Error>,
}

impl OpError {
    pub fn new(kind: ErrorKind, op: &'static str, path: impl fmt::Display, message: impl Into<String>) -> Self {
        OpError { kind, op, path: path.to_string(), message: message.into(), source: None }
    }

    pub fn io(op: &'static str, path: impl fmt::Display, err: io::Error) -> Self {
        OpError {
            kind: ErrorKind::from_io(err.kind()),
            op,
            path: path.to_string(),
            message: err.to_string(),
            source: Some(err),
        }
    }

    /// Retrying may succeed. The engine retries these and nothing else.
    /// Worth another attempt. A refused or failed connect counts: in the
    /// middle of a run the server was reachable a moment ago, and a restart
    /// (or a moment of overload) refuses connections for a few seconds. At
    /// the start of a run the backends' opening is not retried through here.
    pub fn is_temporary(&self) -> bool {
        matches!(self.kind, ErrorKind::Temporary | ErrorKind::SourceChanged | ErrorKind::Connect)
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op, self.path, self.message)
    }
}

/// Why a whole run stopped. Each maps to one documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("cannot use the {side} {location}: {source}")]
    Unreachable {
        /// "source" or "destination".
        side: &'static str,
        location: String,
        #[source]
        source: OpError,
    },
    #[error("job already running: {holder} holds the lock {}", lock_file.display())]
    Locked { lock_file: PathBuf, holder: String },
    #[error("safety stop: {0}")]
    SafetyStop(String),
    #[error("state database {}: {source}", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Op(#[from] OpError),
}

impl Error {
    /// The process exit code documented in README and `--help`.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Unreachable { .. } => exit::UNREACHABLE,
            Error::Locked { .. } => exit::LOCKED,
            Error::SafetyStop(_) => exit::SAFETY_STOP,
            Error::State { .. } | Error::Io { .. } | Error::Op(_) => exit::PARTIAL,
        }
    }
}

/// Process exit codes.
pub mod exit {
    pub const OK: i32 = 0;
    /// Some files failed (the rest was done), or the run failed otherwise.
    pub const PARTIAL: i32 = 1;
    /// Usage or configuration error.
    pub const USAGE: i32 = 2;
    /// Cannot connect, authenticate or read a root.
    pub const UNREACHABLE: i32 = 3;
    /// The same job is already running.
    pub const LOCKED: i32 = 4;
    /// A safety stop (too many deletions, suspicious listing).
    pub const SAFETY_STOP: i32 = 5;
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
