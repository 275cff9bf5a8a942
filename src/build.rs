//! Release builds lay out the machine code that a sync runs in one
//! stretch (`src/text-order.txt`, made by `benches/text_order.sh`): the
//! kernel maps a binary's code 64 KiB at a time around each page first
//! run, so code spread over the whole text costs resident memory for every
//! neighbour it pulls in. Only where the linker is known to take a symbol
//! ordering file: rust-lld, rustc's default linker for x86_64 Linux since
//! 1.90. Symbols the file names that no longer exist are skipped.

use std::env;
use std::path::Path;

fn main() {
    let order = Path::new("src/text-order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=BARGE_NO_TEXT_ORDER");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = env::var("TARGET").unwrap_or_default();
    let own_linker = env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
        || env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| f.contains("link"));
    if !release
        || target != "x86_64-unknown-linux-gnu"
        || own_linker
        || env::var_os("BARGE_NO_TEXT_ORDER").is_some()
        || !rustc_links_with_lld()
        || !order.exists()
    {
        return;
    }
    let path = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join(order);
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", path.display());
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// rustc 1.90 or newer (rust-lld by default on this target).
fn rustc_links_with_lld() -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("--version").output() else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace().nth(1).unwrap_or("").split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (1, 90)
}
