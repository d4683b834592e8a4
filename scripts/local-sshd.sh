# Sourced by the demo and bench/backup.sh: start_local_sshd DIR starts a throwaway OpenSSH sshd on
# 127.0.0.1 (its own host key, client key, config and known_hosts in DIR; keys only) and sets PORT.
# DIR/client is the authorized client key, DIR/known_hosts holds the host key, DIR/pid its pid.
start_local_sshd() {
  local dir=$1
  mkdir -p "$dir" /run/sshd
  ssh-keygen -q -t ed25519 -N '' -f "$dir/host"
  ssh-keygen -q -t ed25519 -N '' -f "$dir/client"
  cp "$dir/client.pub" "$dir/authorized_keys"
  PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
  printf '%s\n' "ListenAddress 127.0.0.1" "Port $PORT" "HostKey $dir/host" "PidFile $dir/pid" "AuthorizedKeysFile $dir/authorized_keys" \
    "PasswordAuthentication no" "KbdInteractiveAuthentication no" "PermitRootLogin prohibit-password" "StrictModes no" "UsePAM no" \
    "Subsystem sftp internal-sftp" > "$dir/config"
  /usr/sbin/sshd -f "$dir/config"
  echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$dir/host.pub")" > "$dir/known_hosts"
}
