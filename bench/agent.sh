#!/usr/bin/env bash
# The cost of going through the agent, against stock OpenSSH in the same run, to a real sshd on
# 127.0.0.1 (keys only). Per request, N times each (default 20), the median wall time of:
#   stock:  ssh HOST true                       a plain key; sshd runs `true` through the login shell
#   agent:  ssh HOST 'jobs --json'              a key forced to `snapferry agent --role=read-only`
#   refuse: ssh HOST 'jobs; id'                 the same key, refused (E_AGENT_SYNTAX)
#   queue:  ssh HOST 'backup sample --json'     an operator key: split, check, write the job, answer
# and the ratios agent/stock etc. The agent's own cost is one node start plus its work; the sudo
# hop of the appliance (a second node start) is not part of this run (root needs none).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/agent.sh: must run as root (sshd)" >&2; exit 1; }
for t in ssh ssh-keygen /usr/sbin/sshd age-keygen; do command -v "$t" >/dev/null 2>&1 || { echo "bench/agent.sh: '$t' is missing" >&2; exit 127; }; done
npm run --silent build
bash images/sample-vm.sh >/dev/null
n=${N:-20}
tmp=$(mktemp -d)
ssh=$tmp/ssh
cleanup() { [ -f "$ssh/pid" ] && kill "$(cat "$ssh/pid")" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
source scripts/local-sshd.sh
start_local_sshd "$ssh"
age-keygen -o "$tmp/age.txt" 2>/dev/null
printf '[repository local]\nurl = %s\nrecipient = %s\n[vm sample]\nsource = %s\nrepository = local\n' "$tmp/repo" "$(age-keygen -y "$tmp/age.txt")" "$PWD/images/cache/sample-vm/sample.vmx" > "$tmp/config"
ssh-keygen -q -t ed25519 -N '' -f "$tmp/ro"
ssh-keygen -q -t ed25519 -N '' -f "$tmp/op"
forced() { echo "SNAPFERRY_STATE_DIR=$tmp/state SNAPFERRY_CONFIG=$tmp/config $(command -v node) $PWD/bin/snapferry.js agent --role=$1"; }
{
  cat "$ssh/client.pub"
  echo "command=\"$(forced read-only)\",restrict $(cat "$tmp/ro.pub")"
  echo "command=\"$(forced operator)\",restrict $(cat "$tmp/op.pub")"
} > "$ssh/authorized_keys"
base=(-p "$PORT" -o UserKnownHostsFile="$ssh/known_hosts" -o BatchMode=yes -o IdentitiesOnly=yes -F /dev/null -T)
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
run() { # run KEY COMMAND: median seconds of n requests
  local key=$1 cmd=$2
  for _ in $(seq "$n"); do
    local s e
    s=$(date +%s.%N)
    ssh "${base[@]}" -i "$key" root@127.0.0.1 "$cmd" >/dev/null 2>&1 || true
    e=$(date +%s.%N)
    echo "$e - $s" | bc -l
  done | median
}
stock=$(run "$ssh/client" true)
agent=$(run "$tmp/ro" 'jobs --json')
refuse=$(run "$tmp/ro" 'jobs; id')
queue=$(run "$tmp/op" 'backup sample --json')
printf 'requests: %d each, median wall time over ssh to 127.0.0.1\n' "$n"
printf '  stock  ssh true               %.3f s\n' "$stock"
printf '  agent  jobs --json            %.3f s   %.2fx stock\n' "$agent" "$(echo "$agent / $stock" | bc -l)"
printf '  agent  refused (jobs; id)     %.3f s   %.2fx stock\n' "$refuse" "$(echo "$refuse / $stock" | bc -l)"
printf '  agent  backup queued          %.3f s   %.2fx stock\n' "$queue" "$(echo "$queue / $stock" | bc -l)"
printf '  jobs queued: %s (no jobd runs in this bench)\n' "$(ls "$tmp/state/jobs" | wc -l)"
