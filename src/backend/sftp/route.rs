//! Where and as whom an SFTP session connects: the location as
//! `~/.ssh/config` resolves it, the jump hosts on the way (`--jump`, else
//! `ProxyJump`), the SOCKS5 proxy before the first hop, and each host's
//! login and known_hosts.

use std::path::PathBuf;
use std::sync::Arc;

use super::auth::{self, Credentials, KeySources, Passphrase};
use super::session::ConnectParams;
use super::{config, jump};
use crate::backend::RemoteOptions;
use crate::error::{ErrorKind, OpError};
use crate::location::RemoteLocation;

/// What every session to `remote` needs: the location as `~/.ssh/config`
/// resolves it, and the login (user, keys, password), known_hosts file and
/// timeouts shared by the sessions, and the jump hosts on the way (`--jump`,
/// else the config's `ProxyJump`). `barge doctor` connects with the same.
pub async fn connect_params(
    remote: &RemoteLocation,
    options: &RemoteOptions,
) -> Result<(RemoteLocation, Arc<ConnectParams>), OpError> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let resolved = resolve_host(remote, options, home.as_deref())?;
    let remote = &resolved.remote;
    let shown = remote.to_string();
    let login = crate::credentials::resolve(remote, options, &auth::default_user());
    if login.user.is_empty() {
        return Err(OpError::new(
            ErrorKind::Auth,
            "login",
            &shown,
            "no user name: put one in the URL (sftp://user@host/path)",
        ));
    }
    let chain = match &options.sftp.jump {
        Some(chain) => chain.clone(),
        None => resolved.jumps.clone().unwrap_or_default(),
    };
    let mut hops = Vec::new();
    for hop in jump_chain(&chain, options, home.as_deref(), &shown)? {
        // A jump host logs in with ssh-agent and key files only: the
        // final server's password is never sent to it.
        let user = hop.remote.user.clone().unwrap_or_else(auth::default_user);
        hops.push(Arc::new(host_params(hop, user, None, options, home.clone()).await?));
    }
    let first_host = hops.first().map_or(remote.host.as_str(), |hop| hop.host.as_str());
    let proxy = options
        .proxy
        .proxy()
        .map_err(|why| OpError::new(ErrorKind::Connect, "proxy", &shown, why))?
        .filter(|proxy| proxy.applies_to(first_host));
    let remote = remote.clone();
    let params = host_params(resolved, login.user, login.password, options, home).await?.through(hops, proxy);
    Ok((remote, Arc::new(params)))
}

/// Jump chains longer than this are refused (a ProxyJump loop in the
/// config would otherwise never end).
const MAX_JUMPS: usize = 8;

/// `host` as ~/.ssh/config resolves it.
fn resolve_host(
    host: &RemoteLocation,
    options: &RemoteOptions,
    home: Option<&std::path::Path>,
) -> Result<config::Resolved, OpError> {
    config::resolve(host, options.sftp.ssh_config.as_deref(), home, &auth::default_user())
        .map_err(|why| OpError::new(ErrorKind::Connect, "ssh config", host, why))
}

/// The jump hosts of `chain` as ~/.ssh/config resolves each, first
/// connected first. As ssh: the first hop's own `ProxyJump` puts its hops
/// before it; later hops are reached through the earlier ones whatever
/// their config says.
fn jump_chain(
    chain: &[jump::JumpHost],
    options: &RemoteOptions,
    home: Option<&std::path::Path>,
    shown: &str,
) -> Result<Vec<config::Resolved>, OpError> {
    let resolve = |hop: &jump::JumpHost| {
        let location = RemoteLocation {
            scheme: crate::location::Scheme::Sftp,
            user: hop.user.clone(),
            password: None,
            host: hop.host.clone(),
            port: hop.port.unwrap_or(22),
            port_given: hop.port.is_some(),
            path: b"/".to_vec(),
        };
        resolve_host(&location, options, home)
    };
    let mut hops = chain.iter().map(resolve).collect::<Result<Vec<_>, _>>()?;
    while let Some(before) = hops.first_mut().and_then(|first| first.jumps.take()).filter(|b| !b.is_empty()) {
        let mut earlier = before.iter().map(resolve).collect::<Result<Vec<_>, _>>()?;
        earlier.append(&mut hops);
        hops = earlier;
        if hops.len() > MAX_JUMPS {
            return Err(OpError::new(
                ErrorKind::Connect,
                "ssh config",
                shown,
                format!("more than {MAX_JUMPS} jump hosts (does a ProxyJump lead back to itself?)"),
            ));
        }
    }
    Ok(hops)
}

/// The parameters of one SSH server after ~/.ssh/config: known_hosts
/// (`--known-hosts`, else the config's `UserKnownHostsFile`, else
/// ~/.ssh/known_hosts), key files, the login.
async fn host_params(
    resolved: config::Resolved,
    user: String,
    password: Option<crate::location::Secret>,
    options: &RemoteOptions,
    home: Option<PathBuf>,
) -> Result<ConnectParams, OpError> {
    let remote = &resolved.remote;
    let shown = remote.to_string();
    let known_hosts = match (options.sftp.known_hosts.as_ref().or(resolved.known_hosts.as_ref()), &home) {
        (Some(path), _) => path.clone(),
        (None, Some(home)) => home.join(".ssh").join("known_hosts"),
        (None, None) => {
            return Err(OpError::new(
                ErrorKind::Connect,
                "host key",
                &shown,
                "no known_hosts file to check the server against: set HOME or give --known-hosts FILE",
            ));
        }
    };
    let passphrase = match &options.sftp.passphrase_env {
        Some(var) => Some(Passphrase::from_env(var, &shown)?),
        None => None,
    };
    let identity = options.sftp.identity.clone();
    let key_shown = shown.clone();
    let configured = resolved.identity_files.clone();
    let (keys, skipped) = tokio::task::spawn_blocking(move || {
        let sources = KeySources {
            identity: identity.as_deref(),
            passphrase: passphrase.as_ref(),
            configured: &configured,
            home: home.as_deref(),
        };
        auth::load_keys(&sources, &key_shown)
    })
    .await
    .map_err(|e| OpError::new(ErrorKind::Other, "login", &shown, e.to_string()))??;
    let credentials = Credentials {
        user,
        agent: std::env::var_os("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()),
        keys,
        password,
        skipped,
    };
    Ok(ConnectParams::new(
        remote.host.clone(),
        remote.port,
        credentials,
        known_hosts,
        options.sftp.accept_new_host_key || resolved.accept_new_host_key,
        options.timeout,
    ))
}
