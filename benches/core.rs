//! Core benchmarks (criterion): the planner on two 1,000,000-entry listings,
//! and blake3 hashing of local files on rayon. See BENCHMARKS.md for how to
//! run them and for the results.
//!
//! Big inputs are built lazily, inside the benchmark functions, so
//! `cargo bench --bench core -- --list` and `cargo test --benches` stay fast:
//! in test mode (`--test`) criterion runs each routine once, and the inputs
//! are made small (see [`scale`]).

#[path = "../tests/support/listings.rs"]
mod listings;

use std::collections::HashMap;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use barge::hash::{hash_local_file, hash_local_files};
use barge::path::RelPath;
use barge::plan::SyncedRecord;
use barge::plan::{CompareMode, CompareRule, LinkRule, PermRule, PlanInput, plan};
use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

/// True when criterion only checks that each benchmark runs once
/// (`cargo test --benches`, which passes no `--bench`, or
/// `cargo bench -- --test`): the inputs shrink a hundredfold. Benchmark
/// names do not change with it.
fn quick() -> bool {
    let args: Vec<String> = std::env::args().collect();
    !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test")
}

/// `full` normally, a small fraction of it in test mode.
fn scale(full: usize) -> usize {
    if quick() { (full / 100).max(2) } else { full }
}

fn bench_plan(c: &mut Criterion) {
    let (dirs, files) = (scale(1_000), 1_000);
    let mut group = c.benchmark_group("plan");
    group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(10));
    let mut cached = None;
    let entries = dirs * (files + 1);
    group.throughput(Throughput::Elements(entries as u64));
    group.bench_function("1000x1000_files_mtime_delete", |b| {
        // Built on first use only, so listing the benchmarks costs nothing.
        let (src, dst) = cached.get_or_insert_with(|| {
            let (src, dst) = listings::listings(dirs, files);
            listings::assert_tree_order(&src);
            listings::assert_tree_order(&dst);
            (src, dst)
        });
        let synced: HashMap<RelPath, SyncedRecord> = HashMap::new();
        let unreadable: Vec<RelPath> = Vec::new();
        let rule = CompareRule::new(CompareMode::Mtime, Duration::from_nanos(1), Duration::from_nanos(1), true);
        b.iter_batched(
            || (src.clone(), dst.clone()),
            |(src, dst)| {
                // The planner consumes (and so frees) both listings: that is
                // part of the measured time, as it is in a real run.
                plan(PlanInput {
                    src,
                    dst,
                    src_unreadable: &unreadable,
                    synced: &synced,
                    rule,
                    delete: true,
                    links: LinkRule::default(),
                    perms: PermRule::default(),
                })
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

/// Files for the hashing benchmarks, written once per process into a
/// temporary directory on disk (not tmpfs) and read from the page cache.
struct HashFixture {
    _dir: tempfile::TempDir,
    big: PathBuf,
    small_root: PathBuf,
    small: Vec<RelPath>,
    big_len: u64,
    small_len: u64,
}

/// Deterministic incompressible bytes (xorshift), cheap to produce.
fn fill(buf: &mut [u8], seed: u64) {
    let mut x = seed | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

fn write_file(path: &Path, len: usize, seed: u64) {
    let mut buf = vec![0u8; 1 << 20];
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut left = len;
    let mut n = 0;
    while left > 0 {
        let take = left.min(buf.len());
        fill(&mut buf[..take], seed.wrapping_add(n));
        file.write_all(&buf[..take]).expect("write");
        left -= take;
        n += 1;
    }
    file.flush().expect("flush");
}

fn hash_fixture() -> HashFixture {
    // BARGE_BENCH_TMP picks the directory; the default is the system one.
    let dir = match std::env::var_os("BARGE_BENCH_TMP") {
        Some(base) => tempfile::Builder::new().prefix("barge-hash-").tempdir_in(base),
        None => tempfile::Builder::new().prefix("barge-hash-").tempdir(),
    }
    .expect("temporary directory");
    let big_len = scale(256) << 20;
    let big = dir.path().join("big.bin");
    write_file(&big, big_len, 0x5eed);
    let small_root = dir.path().join("small");
    std::fs::create_dir(&small_root).expect("mkdir");
    let count = scale(2_000);
    let small: Vec<RelPath> = (0..count)
        .map(|i| {
            let rel = RelPath::parse(format!("f-{i:04}.bin").as_bytes()).expect("valid name");
            write_file(&rel.to_local(&small_root), 64 << 10, i as u64 + 1);
            rel
        })
        .collect();
    HashFixture { _dir: dir, big, small_root, small, big_len: big_len as u64, small_len: (count as u64) << 16 }
}

fn bench_hash(c: &mut Criterion) {
    let mut fixture = None;
    let mut group = c.benchmark_group("hash");
    group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(5));
    let big_len = (scale(256) as u64) << 20;
    group.throughput(Throughput::Bytes(big_len));
    group.bench_function("one_file_256MiB", |b| {
        let f = fixture.get_or_insert_with(hash_fixture);
        assert_eq!(f.big_len, big_len);
        b.iter(|| hash_local_file(black_box(&f.big)).expect("hash"));
    });
    let count = scale(2_000);
    group.throughput(Throughput::Bytes((count as u64) << 16));
    group.bench_function("2000_files_64KiB", |b| {
        let f = fixture.get_or_insert_with(hash_fixture);
        assert_eq!(f.small_len, (count as u64) << 16);
        b.iter(|| {
            let results = hash_local_files(black_box(&f.small_root), black_box(&f.small));
            assert!(results.iter().all(Result::is_ok));
            results
        });
    });
    group.finish();
}

criterion_group!(benches, bench_plan, bench_hash);
criterion_main!(benches);
