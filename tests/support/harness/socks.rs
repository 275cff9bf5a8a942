//! A real SOCKS5 proxy (microsocks) for the proxy tests.

use super::process::{Daemon, Probe, StartError, instance_dir, port_block, start_with_retries};
use super::{bin, ensure_installed};

/// A running microsocks on 127.0.0.1. Dropping it stops it.
pub struct SocksProxy {
    pub port: u16,
    /// The user and password it demands, if any.
    pub login: Option<(String, String)>,
    daemon: Daemon,
}

impl SocksProxy {
    /// `socks5://[user:password@]127.0.0.1:port`.
    pub fn url(&self) -> String {
        match &self.login {
            Some((user, password)) => format!("socks5://{user}:{password}@127.0.0.1:{}", self.port),
            None => format!("socks5://127.0.0.1:{}", self.port),
        }
    }

    /// The connections it carried, as it logged them: `host:port` each.
    pub fn carried(&self) -> Vec<String> {
        self.daemon
            .logs()
            .lines()
            .filter_map(|line| line.split_once(": connected to ").map(|(_, target)| target.trim().to_string()))
            .collect()
    }

    pub fn logs(&self) -> String {
        self.daemon.logs()
    }
}

/// Starts microsocks on a free port; with `login`, it demands that user
/// and password (RFC 1929).
pub fn socks_proxy(login: Option<(&str, &str)>) -> SocksProxy {
    ensure_installed();
    start_with_retries("microsocks", || start_once(login))
}

fn start_once(login: Option<(&str, &str)>) -> Result<SocksProxy, StartError> {
    let (tmp, _root) = instance_dir("barge-socks-");
    let port = port_block();
    let mut args = vec!["-i".to_string(), "127.0.0.1".to_string(), "-p".to_string(), port.to_string()];
    if let Some((user, password)) = login {
        args.extend(["-u".to_string(), user.to_string(), "-P".to_string(), password.to_string()]);
    }
    let mut daemon = Daemon::spawn("microsocks", tmp, &bin("usr/bin/microsocks"), args, false);
    daemon.kill_on_drop();
    daemon.wait_ready(port, Probe::Connect)?;
    let login = login.map(|(u, p)| (u.to_string(), p.to_string()));
    Ok(SocksProxy { port, login, daemon })
}
