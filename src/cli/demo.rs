//! `barge demo`: generates a sample tree, mirrors it, changes it, mirrors
//! it again and checks the result, all through the same code path as
//! `barge sync`. Needs nothing but this binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use crate::engine::EngineConfig;
use crate::engine::report::{OutputOptions, Reporter, Verbosity};
use crate::error::{Error, exit};
use crate::location::Location;
use crate::plan::CompareMode;
use crate::plan::filter::Filter;
use crate::sync::{self, Job, Mode};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to build the sample tree and its mirror (default: a new directory under the system temp dir).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Number of sample files.
    #[arg(long, default_value_t = 500)]
    pub files: u32,
}

fn io_err(context: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let context = format!("{context} {}", path.display());
    move |source| Error::Io { context, source }
}

/// Deterministic pseudo-random content, so every demo mirrors the same tree.
fn sample_bytes(seed: u32, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(u64::from(seed));
    (0..len).map(|_| rng.u8(..)).collect()
}

fn generate(source: &Path, files: u32) -> Result<u64, Error> {
    let mut total = 0;
    for i in 0..files {
        let dir = source.join(format!("dept-{}", i % 7)).join(format!("year-{}", 2020 + i % 5));
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        // Mostly small files, a few larger ones: the shape of real trees.
        let len = match i % 50 {
            0 => 4 << 20,
            1..=5 => 256 << 10,
            _ => 1024 + (i as usize * 37) % 16384,
        };
        let path = dir.join(format!("report-{i:05}.dat"));
        fs::write(&path, sample_bytes(i, len)).map_err(io_err("write", &path))?;
        total += len as u64;
    }
    let odd = source.join("names").join("café ünïcödé — 東京.txt");
    fs::create_dir_all(source.join("names")).map_err(io_err("create", source))?;
    fs::write(&odd, b"names are bytes\n").map_err(io_err("write", &odd))?;
    fs::create_dir_all(source.join("empty-dir")).map_err(io_err("create", source))?;
    Ok(total)
}

async fn mirror(source: &Path, mirror: &Path, state: &Path, mode: Mode, delete: bool) -> Result<i32, Error> {
    let job = Job {
        src: Location::Local(source.to_path_buf()),
        dst: Location::Local(mirror.to_path_buf()),
        compare: CompareMode::Mtime,
        delete,
        safety: crate::sync::Safety::default(),
        reports: crate::sync::Reports::default(),
        filter: Filter::default(),
        engine: EngineConfig {
            concurrency: crate::engine::adapt::Concurrency::fixed(8),
            retries: 3,
            bwlimit: None,
            bw_timetable: None,
            inplace: false,
            backup_dir: None,
            verify: false,
            fxp: false,
            segmenting: crate::commit::Segmenting::default(),
            timeout: std::time::Duration::from_secs(60),
            perms: Some(crate::perms::Perms::new(0o777)),
            owners: crate::perms::Owners::default(),
            moving: None,
        },
        state_path: Some(state.to_path_buf()),
        src_remote: crate::backend::RemoteOptions::default(),
        dst_remote: crate::backend::RemoteOptions::default(),
        trust_state: false,
        verify_state: false,
        files_from: None,
        links: crate::plan::LinkMode::Copy,
    };
    let reporter = Arc::new(Reporter::new(OutputOptions { json: false, verbosity: Verbosity::Normal }));
    Ok(sync::run(job, mode, reporter).await?.exit_code)
}

pub async fn run(args: DemoArgs) -> Result<i32, Error> {
    let base = match args.dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("barge-demo-{}", std::process::id())),
    };
    let (source, target, state) = (base.join("source"), base.join("mirror"), base.join("demo-state.db"));
    if source.exists() || target.exists() {
        return Err(Error::Usage(format!("{} already holds a demo: remove it or pick another --dir", base.display())));
    }
    let total = tokio::task::spawn_blocking({
        let source = source.clone();
        move || generate(&source, args.files)
    })
    .await
    .map_err(|e| Error::Io {
        context: "generate sample tree".into(),
        source: std::io::Error::other(e.to_string()),
    })??;
    println!(
        "1. generated {} sample files ({}) in {}",
        args.files + 1,
        crate::units::human_bytes(total),
        source.display()
    );
    println!("\n$ barge sync {} {}", source.display(), target.display());
    let code = mirror(&source, &target, &state, Mode::Sync, false).await?;
    if code != exit::OK {
        return Ok(code);
    }

    println!("\n2. resync with nothing changed: nothing is transferred");
    mirror(&source, &target, &state, Mode::Sync, false).await?;

    println!("\n3. change one file, add one, delete one; `barge plan` shows what sync would do:");
    let changed = source.join("dept-1/year-2021/report-00001.dat");
    fs::write(&changed, b"changed content\n").map_err(io_err("write", &changed))?;
    let added = source.join("dept-0/new-file.txt");
    fs::write(&added, b"a new file\n").map_err(io_err("write", &added))?;
    let removed = source.join("dept-2/year-2022/report-00002.dat");
    fs::remove_file(&removed).map_err(io_err("remove", &removed))?;
    mirror(&source, &target, &state, Mode::Plan, true).await?;

    println!("\n$ barge sync --delete {} {}", source.display(), target.display());
    let code = mirror(&source, &target, &state, Mode::Sync, true).await?;
    println!("\n4. barge check: exit 0 means the trees match");
    let check = mirror(&source, &target, &state, Mode::Check, true).await?;
    println!("\ndemo finished (check exit code {check}); files are in {}", base.display());
    Ok(if code == exit::OK { check } else { code })
}
