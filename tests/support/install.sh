#!/usr/bin/env bash
# Installs everything the integration-test server harness (tests/support/harness) and the
# benchmarks need, on Debian 12, as root, non-interactively. Idempotent: after the
# first successful run it writes a stamp file and later runs return in well under 1 s.
#
# What it does:
#   * apt-get installs the runtime libraries of the FTP/SSH servers plus
#     openssh-client, openssl, procps, lftp, rclone, rsync, hyperfine and
#     strace (a test checks the order of fsync and rename), man-db and
#     groff-base (the manual pages are rendered with `man -l`), tmux (the
#     progress display is read off a real terminal), fish, zsh and elvish
#     (completion is asked the way each shell asks it)
#     (no service is started: a temporary policy-rc.d forbids it).
#   * vsftpd, pure-ftpd and proftpd all conflict with each other as Debian packages
#     (each "Provides/Conflicts: ftp-server"), so they are fetched with
#     `apt-get download` and unpacked with `dpkg -x` into the cache dir, next to
#     openssh-server (unpacked too, so /etc/ssh and the machine's own setup stay
#     untouched) and microsocks (a SOCKS5 server for the proxy tests; unpacked so
#     its system service is never installed). Binaries are run from there with
#     absolute paths.
#   * creates the login user `bargetest` (password below) used by every server,
#     the privilege-separation user `sshd` that sshd insists on, and the PAM
#     service /etc/pam.d/barge-test (pam_unix only) that vsftpd authenticates with.
#   * generates once a test CA and a server certificate for localhost/127.0.0.1.
#
# Cache dir: ${BARGE_TEST_SERVERS:-<repo>/target/test-servers}
#   root/            dpkg -x of the server packages (root/usr/sbin/vsftpd, ...)
#   debs/            the downloaded .deb files
#   tls/ca.pem       test CA certificate (CA:TRUE)          tls/ca.key
#   tls/server.pem   leaf certificate (CA:FALSE, SAN localhost, 127.0.0.1, ::1)
#   tls/server.key   leaf private key (RSA 2048, unencrypted)
#   tls/server-bundle.pem  leaf cert + key in one file (pure-ftpd)
#   tls/server-chain.pem   leaf cert + CA cert
#   ssh/client_ed25519[.pub]            client key (no passphrase)
#   ssh/client_ed25519_encrypted[.pub]  client key, passphrase "test-passphrase"
#   .stamp           written last; its content is a hash of this script
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

TEST_USER=bargetest
TEST_PASSWORD=barge-test-password
PAM_SERVICE=barge-test
KEY_PASSPHRASE=test-passphrase

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${BARGE_TEST_SERVERS:-$repo/target/test-servers}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
stamp="$cache/.stamp"
script_hash="$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"

# The binaries the harness runs, relative to $cache/root.
server_bins=(usr/sbin/vsftpd usr/sbin/pure-ftpd usr/bin/pure-pw usr/sbin/proftpd usr/sbin/sshd
    usr/lib/proftpd/mod_tls.so usr/bin/microsocks)
# Commands that must be on PATH afterwards.
tools=(ssh sftp ssh-keygen openssl lftp rclone rsync hyperfine strace man groff tmux fish zsh elvish kill flock useradd chpasswd)

log() { echo "install.sh: $*" >&2; }

# Cheap checks that the machine still has what the stamp promises (the cache dir may
# outlive the machine it was made on).
quick_check() {
    [[ -f "$stamp" && "$(cat "$stamp")" == "$script_hash" ]] || return 1
    local t b
    for t in "${tools[@]}"; do command -v "$t" >/dev/null 2>&1 || return 1; done
    for b in "${server_bins[@]}"; do [[ -e "$cache/root/$b" ]] || return 1; done
    getent passwd "$TEST_USER" >/dev/null || return 1
    getent passwd sshd >/dev/null || return 1
    [[ -f /etc/pam.d/$PAM_SERVICE ]] || return 1
    [[ -f "$cache/tls/server-bundle.pem" ]] || return 1
    [[ -f "$cache/ssh/client_ed25519_encrypted" ]] || return 1
    return 0
}

if quick_check; then
    exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
    log "must run as root (installs packages and creates the user $TEST_USER)"
    exit 1
fi

# Serialise concurrent runs (parallel test binaries, CI + a developer shell).
exec 9>"$cache/.lock"
flock 9
if quick_check; then
    exit 0
fi

apt_opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef
    -o Dpkg::Options::=--force-confold)

apt_lists_fresh() {
    # Fresh = some Packages index exists and is less than 7 days old.
    [[ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mtime -7 2>/dev/null | head -n1)" ]]
}
apt_updated=0
apt_update() {
    if [[ $apt_updated == 0 ]]; then
        log "apt-get update"
        apt-get -q -o DPkg::Lock::Timeout=600 update >&2
        apt_updated=1
    fi
}
# Runs an apt-get command; on failure (stale lists -> 404, unknown package) updates
# the lists once and retries.
apt_retry() {
    if ! "$@" >&2; then
        if [[ $apt_updated == 1 ]]; then return 1; fi
        apt_update
        "$@" >&2
    fi
}
apt_lists_fresh || apt_update

# Never let a package start a service (restored afterwards).
policy=/usr/sbin/policy-rc.d
made_policy=0
cleanup() { if [[ $made_policy == 1 ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
fi

# --- 1. Download and unpack the conflicting servers ---------------------------------
unpacked_pkgs=(vsftpd pure-ftpd proftpd-core proftpd-mod-crypto openssh-server microsocks)
debs="$cache/debs"
mkdir -p "$debs"
(cd "$debs" && rm -f ./*.deb && apt_retry apt-get -q download "${unpacked_pkgs[@]}")
rm -rf "$cache/root"
mkdir -p "$cache/root"
for deb in "$debs"/*.deb; do
    dpkg -x "$deb" "$cache/root"
done

# Their shared-library dependencies (lib* packages from their Depends fields, first
# alternative, without version constraints) are installed normally.
lib_pkgs=()
for deb in "$debs"/*.deb; do
    while IFS= read -r dep; do
        dep="${dep%%|*}"
        dep="${dep%%(*}"
        dep="${dep// /}"
        [[ "$dep" == lib* ]] && lib_pkgs+=("$dep")
    done < <(dpkg-deb -f "$deb" Depends | tr ',' '\n')
done
mapfile -t lib_pkgs < <(printf '%s\n' "${lib_pkgs[@]}" | sort -u)

# --- 2. Normal packages ----------------------------------------------------------
pkgs=("${lib_pkgs[@]}" openssh-client openssl ca-certificates procps passwd util-linux
    lftp rclone rsync hyperfine strace man-db groff-base tmux fish zsh elvish)
log "apt-get install ${pkgs[*]}"
apt_retry apt-get install "${apt_opts[@]}" "${pkgs[@]}"

missing=0
for b in "${server_bins[@]}"; do
    libs="$(ldd "$cache/root/$b")"
    if [[ "$libs" == *"not found"* ]]; then
        log "unresolved shared libraries in $b:"
        grep 'not found' <<<"$libs" >&2
        missing=1
    fi
done
[[ $missing == 0 ]] || exit 1

# --- 3. Users and PAM ------------------------------------------------------------
if ! getent passwd "$TEST_USER" >/dev/null; then
    useradd --create-home --shell /bin/bash --comment "barge integration tests" "$TEST_USER"
fi
echo "$TEST_USER:$TEST_PASSWORD" | chpasswd
# sshd refuses to start without its privilege-separation user (the openssh-server
# postinst, which we don't run, would create it the same way).
if ! getent passwd sshd >/dev/null; then
    useradd --system --no-create-home --home-dir /run/sshd --shell /usr/sbin/nologin sshd
fi
# vsftpd only authenticates through PAM; a dedicated service file keeps the machine's
# own PAM setup (and /etc/ftpusers) out of the way.
cat >/etc/pam.d/$PAM_SERVICE <<'EOF'
# Used by barge's integration-test FTP servers (tests/support/install.sh).
auth     required pam_unix.so nodelay
account  required pam_unix.so
session  required pam_permit.so
EOF

# --- 4. TLS material -------------------------------------------------------------
tls="$cache/tls"
if [[ ! -f "$tls/server-bundle.pem" ]]; then
    rm -rf "$tls.tmp"
    mkdir -p "$tls.tmp"
    (
        cd "$tls.tmp"
        cat >ca.ext <<'EOF'
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
        cat >server.ext <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
        openssl genrsa -out ca.key 2048 2>/dev/null
        openssl req -new -key ca.key -subj "/CN=barge test CA" -out ca.csr
        openssl x509 -req -in ca.csr -signkey ca.key -days 7300 -sha256 \
            -extfile ca.ext -out ca.pem 2>/dev/null
        openssl genrsa -out server.key 2048 2>/dev/null
        openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
            -days 3650 -sha256 -extfile server.ext -out server.pem 2>/dev/null
        openssl verify -CAfile ca.pem server.pem >/dev/null
        cat server.pem server.key >server-bundle.pem
        cat server.pem ca.pem >server-chain.pem
        rm -f ./*.csr ./*.ext
        chmod 600 ./*.key server-bundle.pem
    )
    rm -rf "$tls"
    mv "$tls.tmp" "$tls"
fi

# --- 5. SSH client keys (host keys are made per sshd instance by the harness) --------
ssh_dir="$cache/ssh"
if [[ ! -f "$ssh_dir/client_ed25519_encrypted" ]]; then
    rm -rf "$ssh_dir.tmp"
    mkdir -p "$ssh_dir.tmp"
    ssh-keygen -q -t ed25519 -N '' -C barge-test-client -f "$ssh_dir.tmp/client_ed25519"
    ssh-keygen -q -t ed25519 -N "$KEY_PASSPHRASE" -C barge-test-client-encrypted \
        -f "$ssh_dir.tmp/client_ed25519_encrypted"
    rm -rf "$ssh_dir"
    mv "$ssh_dir.tmp" "$ssh_dir"
fi

for t in "${tools[@]}"; do
    command -v "$t" >/dev/null 2>&1 || { log "missing tool after install: $t"; exit 1; }
done

echo "$script_hash" >"$stamp"
log "done ($cache)"
