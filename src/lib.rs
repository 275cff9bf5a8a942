//! barge: a bulk sync and mirroring engine for local disk, FTP, FTPS and SFTP.
//!
//! # Layout
//!
//! One run flows through these modules, in this order:
//!
//! - [`cli`]: clap definitions, then validation into a [`sync::Job`].
//! - [`location`]: a path or URL into a [`location::Location`] (secrets never print).
//! - [`backend`]: the one trait every protocol implements (list, stat,
//!   read, write, rename, remove, mkdir, times, links, hashes), over a
//!   [`path::RelPath`] space that cannot escape its root. What only some
//!   backends do is data ([`backend::Capabilities`]; [`backend::Profile`],
//!   known before connecting) or an optional interface asked for by name
//!   ([`backend::ServerCopy`], [`backend::TextMode`],
//!   [`backend::SegmentedWrite`]). [`backend::local`], `ftp`, `sftp`;
//!   [`backend::stream`]: walks sent in tree order as directories are listed.
//! - [`sync`]: one run end to end: lock, open, one pipeline (list, march,
//!   act), finish. The march runs over both sides as streams; a plain sync
//!   acts early (copies start with the first listings, deletions wait for
//!   the whole tree); `plan`, `check` and the syncs that need everything
//!   first (hash compare, `--max-delete`, `--trust-state`...) run the same
//!   march with early actions off. `sync/safety.rs` says when barge deletes.
//! - [`plan`]: the pure planner (sorted merge of two listings and the state
//!   cache, [`plan::march`] over iterators), the equality rule
//!   ([`plan::compare`]) and filters (globs: [`patterns`]); which
//!   permission bits are kept, and `--chmod` ([`perms`]).
//! - [`engine`]: runs a plan in phases with bounded concurrency, retry,
//!   a shared rate limit, progress, liveness and reports.
//! - [`commit`]: temporary name, durable write, rename: no partial file ever
//!   holds a final name. Large files are copied in byte ranges at once
//!   (`commit/segments.rs`, [`commit::Segmenting`]).
//! - [`state`]: the sqlite state database: synced pairs (the run journal),
//!   hash cache, partial transfers, runs, and the job lock.
//! - [`hash`]: blake3 of local files on rayon.
//! - [`stop`]: SIGINT/SIGTERM: finish what is in flight, start nothing new.
//! - [`error`]: typed errors and exit codes; beside it what every layer
//!   uses: [`retry`] (backoff for temporary errors) and [`throttle`] (the
//!   one `--bwlimit` limiter).
//! - [`config`]: the TOML config file: named remotes and jobs.
//! - [`doctor`]: `barge doctor`, probes that diagnose a server before a
//!   sync, over its own raw control connection but the backend's FTP
//!   protocol layer (`backend/ftp/protocol.rs`: replies, PASV/EPSV, FEAT,
//!   TLS mode, the active-mode listener).
//!
//! The binary (`src/main.rs`) runs [`cli`] and installs its own allocator
//! (`src/alloc.rs`, large blocks cache-line aligned): a process-wide
//! choice, so the binary's, not something the library exports.
//!
//! # Which way imports point
//!
//! Down, in this order: [`cli`] and [`config`] → [`sync`] → [`engine`] →
//! [`commit`] → [`backend`] → [`path`], [`error`], [`retry`], [`throttle`],
//! [`patterns`], [`units`], [`stop`]. The planner ([`plan`]) is pure: it
//! reads entries and records and imports neither backends' behaviour nor
//! the state database, which stores the planner's records. A backend never
//! imports the engine, commit or the planner: what they share (temporary
//! names, [`backend::temp`]; the chunk size; what makes a server far) lives
//! in [`backend`] or below. Inside the FTP backend, `ftp/mod.rs` is the
//! backend and its pool; `walk.rs`, `transfer.rs`, `mtime.rs`, `modes.rs`
//! and `segments.rs` the things it does; `conn.rs` a logged-in control
//! connection; `protocol.rs` the protocol itself, shared with [`doctor`];
//! `listing/` the pure parsers, one file per format.

pub mod backend;
pub mod cli;
pub mod commit;
pub mod config;
pub mod credentials;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod hash;
pub mod location;
pub mod path;
pub mod patterns;
pub mod perms;
pub mod plan;
pub mod retry;
pub mod state;
pub mod stop;
pub mod sync;
pub mod throttle;
pub mod units;
