# Sourced by the benchmark scripts: start_sshd starts OpenSSH sshd from the
# suite's unpacked packages on 127.0.0.1, a random port, for user $user with
# the suite's client key. Sets: port, inst (its directory; known_hosts for
# 127.0.0.1 and 127.0.0.2), pids (killed on exit). Needs: work, servers, user.
# shellcheck shell=bash
start_sshd() {
    port=$((62000 + RANDOM % 2000))
    inst="$work/sshd"
    rm -rf "$inst" && mkdir -p "$inst" /run/sshd
    ssh-keygen -q -t ed25519 -N '' -f "$inst/host_key"
    local hk
    hk="$(cut -d' ' -f1-2 "$inst/host_key.pub")"
    printf '[127.0.0.1]:%s %s\n[127.0.0.2]:%s %s\n' "$port" "$hk" "$port" "$hk" >"$inst/known_hosts"
    cp "$servers/ssh/client_ed25519.pub" "$inst/authorized_keys"
    chmod 644 "$inst/authorized_keys"
    cat >"$inst/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $inst/host_key
PidFile $inst/sshd.pid
AuthorizedKeysFile $inst/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers $user
Subsystem sftp internal-sftp
MaxStartups 100
MaxSessions 100
LogLevel ERROR
EOF
    "$servers/root/usr/sbin/sshd" -D -e -f "$inst/sshd_config" >"$inst/server.log" 2>&1 &
    pids=($!)
    trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
    sleep 1
}
