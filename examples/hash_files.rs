//! blake3 of local files through barge's own hashing code, printed like
//! `b3sum` (`HEX  PATH`), so `benches/hash_reference.sh` can time it with
//! hyperfine next to `b3sum`, `sha256sum` and `md5sum` on the same files.
//!
//! ```text
//! cargo run --release --example hash_files -- FILE|DIR...
//! ```
//!
//! A FILE goes through `barge::hash::hash_local_file` (memory-mapped and
//! split over rayon above 8 MiB); the regular files directly inside a DIR go
//! through `barge::hash::hash_local_files` (one rayon task per file).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use barge::hash::{hash_local_file, hash_local_files};
use barge::path::RelPath;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.is_empty() {
        eprintln!("usage: hash_files FILE|DIR...");
        return ExitCode::from(2);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failed = false;
    for arg in &args {
        if arg.is_dir() {
            let names = match regular_files(arg) {
                Ok(names) => names,
                Err(err) => {
                    eprintln!("{}: {err}", arg.display());
                    failed = true;
                    continue;
                }
            };
            for (rel, result) in names.iter().zip(hash_local_files(arg, &names)) {
                match result {
                    Ok(hash) => writeln!(out, "{}  {}", to_hex(&hash), rel.to_local(arg).display()),
                    Err(err) => {
                        failed = true;
                        writeln!(std::io::stderr(), "{err}")
                    }
                }
                .expect("write");
            }
        } else {
            match hash_local_file(arg) {
                Ok(hash) => writeln!(out, "{}  {}", to_hex(&hash), arg.display()).expect("write"),
                Err(err) => {
                    eprintln!("{}: {err}", arg.display());
                    failed = true;
                }
            }
        }
    }
    out.flush().expect("write");
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn to_hex(hash: &[u8; 32]) -> String {
    blake3::Hash::from_bytes(*hash).to_hex().to_string()
}

/// Names of the regular files directly in `dir`, sorted.
fn regular_files(dir: &Path) -> std::io::Result<Vec<RelPath>> {
    let mut names = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        if item.file_type()?.is_file()
            && let Ok(rel) = RelPath::root().join(item.file_name().as_bytes())
        {
            names.push(rel);
        }
    }
    names.sort();
    Ok(names)
}
