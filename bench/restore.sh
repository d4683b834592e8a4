#!/usr/bin/env bash
# Single-file restore from a big archive over SFTP: back up images/bench-big.sh's ext4 volume (~4.1 GiB
# of incompressible files: the archive is over 4 GiB) to a real sshd on 127.0.0.1, then restore, cold,
# one 1 MiB file and one small file. Prints each restore's wall time and the archive bytes it fetched
# against the archive's size (targets: < 1 s and < 1% of the archive), and the backup's peak RSS.
# RUNS (default 3) restores of each file; the median is printed. Must run as root (drop_caches, sshd).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/restore.sh: must run as root" >&2; exit 1; }
for t in age-keygen ssh-keygen /usr/sbin/sshd /usr/bin/time; do command -v "$t" >/dev/null 2>&1 || { echo "bench/restore.sh: '$t' is missing" >&2; exit 127; }; done
npm run --silent build
bash images/bench-big.sh
runs=${RUNS:-3}
IMG=images/cache/bench-big/ext4.img
tmp=$(mktemp -d)
ssh=$tmp/ssh
cleanup() { [ -f "$ssh/pid" ] && kill "$(cat "$ssh/pid")" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
median() { sort -n | awk '{v[NR]=$1} END{print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
source scripts/local-sshd.sh
start_local_sshd "$ssh"
age-keygen -o "$tmp/key.txt" 2>/dev/null
R=$(age-keygen -y "$tmp/key.txt")
repo="sftp://root@127.0.0.1:$PORT$tmp/repo"
sf=(--ssh-key "$ssh/client" --known-hosts "$ssh/known_hosts")

cold
/usr/bin/time -f '%e %M' -o "$tmp/t" node bin/snapferry.js backup "$IMG" --repo "$repo" "${sf[@]}" --recipient "$R" --state-dir "$tmp/state" > "$tmp/backup.out"
read -r secs rss < "$tmp/t"
size=$(stat -c %s "$tmp/repo/archives/"*.tar.zst.age)
printf 'backup of %s: %s s, peak RSS %s MiB, archive %s bytes (%.2f GiB)\n' "$IMG" "$secs" $((rss / 1024)) "$size" "$(awk "BEGIN{print $size / 2^30}")"

for f in whole/small/one-mib.bin whole/small/d7/f42.dat; do
  : > "$tmp/times"; : > "$tmp/fetched"
  for r in $(seq "$runs"); do
    rm -rf "$tmp/out"; cold
    t0=$(now)
    node bin/snapferry.js restore --json --repo "$repo" "${sf[@]}" latest "ext4/$f" --identity "$tmp/key.txt" --target "$tmp/out" > "$tmp/r.json"
    t1=$(now)
    awk "BEGIN{printf \"%.3f\n\", $t1 - $t0}" >> "$tmp/times"
    node -e 'const v=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n").pop());console.log(v.bytesFetched)' "$tmp/r.json" >> "$tmp/fetched"
  done
  cmp -s "$tmp/out/ext4/$f" <(node bin/snapferry.js cat "$IMG" "$f") || { echo "bench/restore.sh: restored $f differs from the source" >&2; exit 1; }
  t=$(median < "$tmp/times"); b=$(median < "$tmp/fetched")
  printf 'restore of %-28s %6.3f s (median of %s, cold), fetched %s of %s bytes (%.4f%%)\n' "$f:" "$t" "$runs" "$b" "$size" "$(awk "BEGIN{print 100 * $b / $size}")"
done
echo 'targets: a single-file restore from a >= 4 GiB archive fetches < 1% of it and takes < 1 s'
