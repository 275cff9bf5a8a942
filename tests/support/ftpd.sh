# Sourced by the benchmark scripts: start_ftpd DIR ROOT ANNOUNCE starts
# proftpd (ftp_server=pure-ftpd: pure-ftpd; vsftpd) from the suite's unpacked
# packages on 127.0.0.1:$ftp_port, for user $user with password $password
# and ROOT as home and FTP root; passive ports ftp_port+1 to ftp_port+300,
# announced as ANNOUNCE. Its config, logs and pid file go to DIR (made
# afresh); its pid is appended to pids. Needs: servers, user, password,
# ftp_port, ftp_server, and a function die MESSAGE. Also defines
# wait_port HOST PORT: waits up to 10 s for something to listen there.
# shellcheck shell=bash disable=SC2154
wait_port() {
    local _
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on $1:$2"
}

start_ftpd() {
    local d=$1 root=$2 announce=$3 uid gid hash
    rm -rf "$d" && mkdir -p "$d"
    uid="$(id -u "$user")" gid="$(id -g "$user")"
    hash="$(openssl passwd -6 -salt bargebenchsalt "$password")"
    case "$ftp_server" in
    proftpd)
        printf '%s:%s:%s:%s::%s:/bin/sh\n' "$user" "$hash" "$uid" "$gid" "$root" >"$d/passwd"
        printf '%s:x:%s:\n' "$user" "$gid" >"$d/group"
        chmod 600 "$d/passwd" "$d/group"
        cat >"$d/proftpd.conf" <<EOF
ServerName "barge bench proftpd"
ServerType standalone
DefaultServer on
Port $ftp_port
DefaultAddress 127.0.0.1
SocketBindTight on
UseIPv6 off
User nobody
Group nogroup
Umask 022
PidFile $d/proftpd.pid
ScoreboardFile $d/proftpd.scoreboard
DelayTable none
WtmpLog off
UseReverseDNS off
SystemLog $d/proftpd.log
TransferLog none
AuthOrder mod_auth_file.c
AuthUserFile $d/passwd
AuthGroupFile $d/group
RequireValidShell off
UseFtpUsers off
DefaultRoot ~
AllowOverwrite on
AllowStoreRestart on
AllowRetrieveRestart on
PassivePorts $((ftp_port + 1)) $((ftp_port + 300))
MasqueradeAddress $announce
MaxInstances 400
TimesGMT on
EOF
        "$servers/root/usr/sbin/proftpd" -n -c "$d/proftpd.conf" >"$d/server.log" 2>&1 &
        ;;
    pure-ftpd)
        printf '%s:%s:%s:%s::%s/./::::::::::::\n' "$user" "$hash" "$uid" "$gid" "$root" >"$d/passwd"
        "$servers/root/usr/bin/pure-pw" mkdb "$d/pureftpd.pdb" -f "$d/passwd"
        "$servers/root/usr/sbin/pure-ftpd" -S "127.0.0.1,$ftp_port" -p "$((ftp_port + 1)):$((ftp_port + 300))" \
            -P "$announce" -l "puredb:$d/pureftpd.pdb" -A -E -H -D -U 133:022 -c 400 -C 400 \
            -g "$d/pure-ftpd.pid" >"$d/server.log" 2>&1 &
        ;;
    vsftpd)
        # LIST only (no MLSD, ignores LIST -R): the system user, through the
        # PAM service tests/support/install.sh sets up.
        mkdir -p "$d/empty"
        cat >"$d/vsftpd.conf" <<CONF
listen=YES
listen_ipv6=NO
background=NO
listen_address=127.0.0.1
listen_port=$ftp_port
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
pam_service_name=barge-test
chroot_local_user=YES
allow_writeable_chroot=YES
seccomp_sandbox=NO
local_root=$root
secure_chroot_dir=$d/empty
pasv_enable=YES
pasv_address=$announce
pasv_min_port=$((ftp_port + 1))
pasv_max_port=$((ftp_port + 300))
connect_from_port_20=NO
max_clients=0
max_per_ip=0
use_localtime=NO
mdtm_write=YES
syslog_enable=NO
vsftpd_log_file=$d/vsftpd.log
CONF
        chmod 600 "$d/vsftpd.conf"
        "$servers/root/usr/sbin/vsftpd" "$d/vsftpd.conf" >"$d/server.log" 2>&1 &
        ;;
    *) die "FTP_SERVER must be proftpd, pure-ftpd or vsftpd" ;;
    esac
    pids+=($!)
    wait_port 127.0.0.1 "$ftp_port"
}
