//! `wanem`: a WAN emulator for benchmarks and fault tests (see
//! tests/support/wanem.rs for how FTP passive ports are forwarded).
//!
//! ```text
//! cargo run --release --example wanem -- --listen 127.0.0.2 --to 127.0.0.1 \
//!     --ports 2121,40000-40099 --delay-ms 10 [--rate 10M] [--fault cut-after=1048576] \
//!     [--fault-from 1]
//! ```
//! `--delay-ms` is one way: a round trip costs twice that, and a new
//! connection's set-up one and a half (the server accepts it, and the
//! client hears from it, when it would over a real link). Faults:
//! `cut-after=N`, `stall-after=N`, `reset-after=N` (bytes towards the
//! client, per connection), `refuse`, `flip-at=N` (invert the byte at
//! offset N towards the client on every connection: silent corruption),
//! `silent-after=S` (after S seconds nothing more reaches the client, on
//! any connection, open or new: a server gone silent);
//! `--fault-from K` spares the first K connections (a login, say).

#[path = "../tests/support/wanem.rs"]
mod wanem;

use std::net::IpAddr;
use std::time::Duration;

use wanem::{Fault, Link};

fn usage(message: &str) -> ! {
    eprintln!("wanem: {message}");
    eprintln!(
        "usage: wanem --listen IP --to IP --ports P[,A-B...] [--delay-ms N] [--rate BYTES/s] [--fault KIND[=N]] [--fault-from K]"
    );
    std::process::exit(2)
}

fn parse_ports(text: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u16, u16) =
                    (a.parse().unwrap_or_else(|_| usage("bad port")), b.parse().unwrap_or_else(|_| usage("bad port")));
                ports.extend(a..=b);
            }
            None => ports.push(part.parse().unwrap_or_else(|_| usage("bad port"))),
        }
    }
    ports
}

fn parse_fault(text: &str) -> Fault {
    let (kind, n) = text.split_once('=').unwrap_or((text, "0"));
    let n: u64 = barge::units::parse_size(n).unwrap_or_else(|e| usage(&e));
    match kind {
        "cut-after" => Fault::CutAfter(n),
        "stall-after" => Fault::StallAfter(n),
        "reset-after" => Fault::ResetAfter(n),
        "refuse" => Fault::Refuse,
        "flip-at" => Fault::FlipByteAt { offset: n, times: usize::MAX },
        "silent-after" => Fault::SilentFrom(tokio::time::Instant::now() + Duration::from_secs(n)),
        _ => usage("unknown fault"),
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut to, mut ports) = (None::<IpAddr>, None::<IpAddr>, Vec::new());
    let mut link = Link::default();
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--listen" => listen = Some(value().parse().unwrap_or_else(|_| usage("bad --listen"))),
            "--to" => to = Some(value().parse().unwrap_or_else(|_| usage("bad --to"))),
            "--ports" => ports = parse_ports(&value()),
            "--delay-ms" => {
                link.one_way_delay = Duration::from_millis(value().parse().unwrap_or_else(|_| usage("bad --delay-ms")))
            }
            "--rate" => link.rate = barge::units::parse_size(&value()).unwrap_or_else(|e| usage(&e)),
            "--fault" => link.fault = parse_fault(&value()),
            "--fault-from" => {
                link.fault_from_connection = value().parse().unwrap_or_else(|_| usage("bad --fault-from"))
            }
            other => usage(&format!("unknown flag {other}")),
        }
    }
    let (Some(listen), Some(to)) = (listen, to) else { usage("--listen and --to are required") };
    if ports.is_empty() {
        usage("--ports is required");
    }
    match wanem::forward(listen, to, ports, link).await {
        Ok(_) => {
            eprintln!("wanem: forwarding {listen} -> {to} ({link:?})");
            std::future::pending::<()>().await;
        }
        Err(e) => usage(&format!("cannot listen: {e}")),
    }
}
