//! The `barge` binary: parse arguments, run, map the outcome to an exit code.

use clap::Parser;

use barge::cli::{self, Cli};
use barge::error::exit;

mod alloc;

/// Copy buffers cache-line aligned: the kernel fills them three times as
/// fast (see `alloc`).
#[global_allocator]
static ALLOCATOR: alloc::CacheAlignedLarge = alloc::CacheAlignedLarge;

fn main() {
    // A shell asking what to offer at a TAB gets its answer and nothing else.
    cli::answer_if_asked();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // A script reading --json output gets the fatal line every other
            // usage error gives, not an empty stdout.
            if err.use_stderr() && json_asked() {
                let rendered = err.render().to_string();
                let first = rendered.lines().next().unwrap_or_default();
                let message = first.strip_prefix("error: ").unwrap_or(first);
                println!("{}", serde_json::json!({"type": "fatal", "exit_code": exit::USAGE, "message": message}));
            }
            err.exit()
        }
    };
    let json = cli::wants_json(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("barge: cannot start the async runtime: {err}");
            std::process::exit(exit::PARTIAL);
        }
    };
    let code = match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            let code = err.exit_code();
            if json {
                println!("{}", serde_json::json!({"type": "fatal", "exit_code": code, "message": err.to_string()}));
            }
            eprintln!("barge: {err}");
            code
        }
    };
    // Don't wait for blocking tasks still finishing (a dropped transfer).
    runtime.shutdown_background();
    std::process::exit(code);
}

/// `--json` among the arguments (before a `--`), for a command line clap
/// refused.
fn json_asked() -> bool {
    std::env::args_os().skip(1).take_while(|arg| arg != "--").any(|arg| arg == "--json")
}
