//! A WAN emulator: forwards TCP with a one-way delay, a bandwidth cap and
//! injected faults, for a control port and a passive port range at once.
//!
//! FTP needs the passive ports forwarded too, on the address the server
//! announces. The trick: the server listens on 127.0.0.1 and announces
//! 127.0.0.2 (vsftpd `pasv_address`), where this forwarder listens on the
//! same port numbers. Any loopback address works on Linux, no root needed.
//!
//! Used by `examples/wanem.rs` (a command-line tool) and by the test suite.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What goes wrong, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Close both sides once this many bytes went server-to-client on a
    /// connection (counted per connection).
    CutAfter(u64),
    /// Stop forwarding (but keep the connection open) after this many bytes.
    StallAfter(u64),
    /// Reset (RST) the client side after this many bytes.
    ResetAfter(u64),
    /// From this moment on, nothing more goes server-to-client on any
    /// connection, open or new (accepted, never answered): a server that
    /// went silent mid-run.
    SilentFrom(Instant),
    /// Accept and immediately close new connections.
    Refuse,
    /// Invert the byte at this offset of a connection's server-to-client
    /// stream (silent corruption, as a bad NIC or middlebox makes), on at
    /// most `times` connections in all.
    FlipByteAt {
        offset: u64,
        times: usize,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Added to every byte's trip, each direction.
    pub one_way_delay: Duration,
    /// Bytes per second per direction per connection; 0 = unlimited.
    pub rate: u64,
    pub fault: Fault,
    /// Only connections whose index (in accept order, from 0, over all
    /// ports) is at least this suffer the fault: lets a login succeed first.
    pub fault_from_connection: usize,
    /// When set, only connections to this port suffer the fault (a
    /// server's control port, say, with its data connections left alone).
    pub fault_port: Option<u16>,
}

impl Default for Link {
    fn default() -> Self {
        Link { one_way_delay: Duration::ZERO, rate: 0, fault: Fault::None, fault_from_connection: 0, fault_port: None }
    }
}

/// Counters, for tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    /// Connections accepted on the first port given to [`forward`] (an
    /// FTP server's control port): the rest are data connections.
    pub first_port_connections: AtomicUsize,
    pub bytes_down: AtomicU64,
    pub bytes_up: AtomicU64,
    /// Bytes inverted by [`Fault::FlipByteAt`].
    pub flips: AtomicUsize,
}

/// Forwards `listen_ip:port` to `target_ip:port` for every port given.
/// Runs until the runtime ends.
pub async fn forward(
    listen_ip: IpAddr,
    target_ip: IpAddr,
    ports: impl IntoIterator<Item = u16>,
    link: Link,
) -> std::io::Result<Arc<Stats>> {
    let stats = Arc::new(Stats::default());
    for (n, port) in ports.into_iter().enumerate() {
        let listener = TcpListener::bind(SocketAddr::new(listen_ip, port)).await?;
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let index = stats.connections.fetch_add(1, Ordering::SeqCst);
                if n == 0 {
                    stats.first_port_connections.fetch_add(1, Ordering::SeqCst);
                }
                let chosen = index >= link.fault_from_connection && link.fault_port.is_none_or(|p| p == port);
                let fault = if chosen { link.fault } else { Fault::None };
                if fault == Fault::Refuse {
                    drop(client);
                    continue;
                }
                let stats = Arc::clone(&stats);
                tokio::spawn(async move {
                    let _ = client.set_nodelay(true);
                    splice(client, SocketAddr::new(target_ip, port), link, fault, stats).await;
                });
            }
        });
    }
    Ok(stats)
}

/// Relays between `client` and a new connection to `target`.
///
/// The kernel completed the client's TCP handshake at once, where a real
/// link takes a round trip (SYN, SYN-ACK) before the client may send and
/// half another (its ACK) before the server accepts. So the server is
/// connected to only after one and a half round trips (three one-way
/// delays), and what the client sends meanwhile is held, stamped with
/// when it was sent: the server sees the connection, and the client the
/// server's first bytes (an FTP greeting, an SSH banner), when they would
/// over the link. Without a delay nothing waits.
async fn splice(client: TcpStream, target: SocketAddr, link: Link, fault: Fault, stats: Arc<Stats>) {
    let handshake = Instant::now() + link.one_way_delay * 3;
    let (client_read, client_write) = client.into_split();
    let (server_tx, server_rx) = tokio::sync::oneshot::channel();
    let up = tokio::spawn(pipe(
        client_read,
        async move { server_rx.await.ok() },
        link,
        Fault::None,
        Arc::clone(&stats),
        false,
    ));
    tokio::time::sleep_until(handshake).await;
    let Ok(server) = TcpStream::connect(target).await else {
        up.abort();
        return;
    };
    let _ = server.set_nodelay(true);
    let (server_read, server_write) = server.into_split();
    let _ = server_tx.send(server_write);
    let down = pipe(server_read, async move { Some(client_write) }, link, fault, stats, true).await;
    if down {
        up.abort();
    } else {
        let _ = up.await;
    }
}

/// Copies one direction with delay, rate and fault. Returns true when the
/// fault ended the connection.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    to: impl std::future::Future<Output = Option<tokio::net::tcp::OwnedWriteHalf>>,
    link: Link,
    fault: Fault,
    stats: Arc<Stats>,
    downstream: bool,
) -> bool {
    // Reader and delayed writer are decoupled by a queue of (due, bytes).
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((Instant::now() + link.one_way_delay, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    // Bytes are read (and their due times stamped) from the start; the
    // far side may only be there later (see `splice`).
    let Some(mut to) = to.await else {
        reader.abort();
        return false;
    };
    let mut sent: u64 = 0;
    let started = Instant::now();
    while let Some((due, mut chunk)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if let Fault::SilentFrom(silence) = fault
            && downstream
            && Instant::now() >= silence
        {
            std::future::pending::<()>().await;
        }
        let limit = match fault {
            Fault::CutAfter(n) | Fault::StallAfter(n) | Fault::ResetAfter(n) => Some(n),
            Fault::None | Fault::Refuse | Fault::FlipByteAt { .. } | Fault::SilentFrom(_) => None,
        };
        if let Fault::FlipByteAt { offset, times } = fault
            && (sent..sent + chunk.len() as u64).contains(&offset)
            && stats.flips.fetch_add(1, Ordering::SeqCst) < times
        {
            chunk[usize::try_from(offset - sent).unwrap_or(0)] ^= 0xFF;
        }
        if let Some(limit) = limit
            && sent + chunk.len() as u64 >= limit
        {
            chunk.truncate(usize::try_from(limit.saturating_sub(sent)).unwrap_or(0));
            let _ = to.write_all(&chunk).await;
            match fault {
                Fault::StallAfter(_) => {
                    // Hold the connection open, forwarding nothing, until
                    // the other side gives up.
                    std::future::pending::<()>().await;
                }
                Fault::ResetAfter(_) => {
                    // Linger 0: closing sends RST instead of FIN.
                    #[allow(deprecated)]
                    let _ = to.as_ref().set_linger(Some(Duration::ZERO));
                }
                _ => {}
            }
            reader.abort();
            return true;
        }
        if link.rate > 0 {
            // Pace so that `sent` never runs ahead of rate * elapsed.
            let ahead = Duration::from_secs_f64((sent + chunk.len() as u64) as f64 / link.rate as f64);
            tokio::time::sleep_until(started + ahead).await;
        }
        if to.write_all(&chunk).await.is_err() {
            break;
        }
        sent += chunk.len() as u64;
        let counter = if downstream { &stats.bytes_down } else { &stats.bytes_up };
        counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
    false
}
