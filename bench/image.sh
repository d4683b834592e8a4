#!/usr/bin/env bash
# Image backup against the stock pipeline, in the same run, on the same disk (images/bench-image.sh:
# a 6 GiB monolithicSparse VMDK, ext4, ~1.8 GiB of data, ~70% holes), to a real sshd on 127.0.0.1:
#   ours:  snapferry backup disk.vmdk --image --repo sftp://root@127.0.0.1:PORT/... --recipient R
#   stock: qemu-img convert -O raw disk.vmdk RAW && zstd -3 -T1 < RAW | age -r R | ssh ... 'cat > F'
#          (qemu-img 7.2 cannot write raw to a pipe: "Could not resize file"; it writes a sparse file
#          on the same disk, which zstd then reads, holes included, as a stock restore would produce them)
# Then restore of one 1 MiB file from the image backup over SFTP: wall time, bytes fetched against the
# archive's size, peak RSS. Each timed run starts cold (page cache dropped). Median of RUNS (default 3).
# Must run as root (drop_caches, sshd).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/image.sh: must run as root" >&2; exit 1; }
for t in qemu-img zstd age age-keygen ssh ssh-keygen /usr/sbin/sshd /usr/bin/time; do command -v "$t" >/dev/null 2>&1 || { echo "bench/image.sh: '$t' is missing" >&2; exit 127; }; done
npm run --silent build
bash images/bench-image.sh
runs=${RUNS:-3}
DISK=images/cache/bench-image/disk.vmdk
tmp=$(mktemp -d -p "${BENCH_TMP:-/var/tmp}")
ssh=$tmp/ssh
cleanup() { [ -f "$ssh/pid" ] && kill "$(cat "$ssh/pid")" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
median() { sort -n "$1" | awk '{v[NR]=$1} END{print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

source scripts/local-sshd.sh
start_local_sshd "$ssh"
port=$PORT
sshopt=(-i "$ssh/client" -p "$port" -o UserKnownHostsFile="$ssh/known_hosts" -o BatchMode=yes)
sf=(--ssh-key "$ssh/client" --known-hosts "$ssh/known_hosts")
age-keygen -o "$tmp/key.txt" 2>/dev/null
R=$(age-keygen -y "$tmp/key.txt")
size=$(qemu-img info --output=json "$DISK" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)["virtual-size"]))')

for r in $(seq "$runs"); do
  echo "bench/image.sh: round $r/$runs" >&2
  rm -rf "$tmp/repo" "$tmp/state"
  cold
  /usr/bin/time -f '%e %M' -o "$tmp/t" node bin/snapferry.js backup --image --json "$DISK" --repo "sftp://root@127.0.0.1:$port$tmp/repo" "${sf[@]}" --recipient "$R" --state-dir "$tmp/state" > "$tmp/ours.out"
  read -r secs rss < "$tmp/t"; echo "$secs" >> "$tmp/ours"; echo $((rss / 1024)) >> "$tmp/rss"
  cold
  t0=$(now)
  qemu-img convert -f vmdk -O raw "$DISK" "$tmp/stock.raw" && zstd -q -3 -T1 < "$tmp/stock.raw" | age -r "$R" | ssh "${sshopt[@]}" root@127.0.0.1 "cat > $tmp/stock.age"
  t1=$(now)
  rm -f "$tmp/stock.raw"
  awk "BEGIN{printf \"%.3f\n\", $t1 - $t0}" >> "$tmp/stock"
done
archive=$(stat -c %s "$tmp/repo/archives/"*.tar.zst.age)
stock=$(stat -c %s "$tmp/stock.age")
data=$(node -e 'const v=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n").pop());console.log(v.disks[0].storedBytes)' "$tmp/ours.out")
o=$(median "$tmp/ours"); s=$(median "$tmp/stock")
printf '\ndisk: %s, %s bytes virtual, %s bytes of data (%.1f%% holes)\n' "$DISK" "$size" "$data" "$(awk "BEGIN{print 100 - 100 * $data / $size}")"
printf '%-44s %9ss  archive %s bytes\n' 'snapferry backup --image (SFTP):' "$o" "$archive"
printf '%-44s %9ss  archive %s bytes\n' 'qemu-img convert | zstd -3 | age | ssh cat:' "$s" "$stock"
printf 'ratio (snapferry / stock): %s, median of %s, cold; snapferry peak RSS %s MiB (max of runs)\n' "$(awk "BEGIN{printf \"%.2fx\", $o / $s}")" "$runs" "$(sort -n "$tmp/rss" | tail -1)"

f=whole/small/one-mib.bin
: > "$tmp/times"; : > "$tmp/fetched"; : > "$tmp/rrss"
for r in $(seq "$runs"); do
  rm -rf "$tmp/out"; cold
  t0=$(now)
  /usr/bin/time -f '%M' -o "$tmp/rt" node bin/snapferry.js restore --json --repo "sftp://root@127.0.0.1:$port$tmp/repo" "${sf[@]}" latest "disk/$f" --identity "$tmp/key.txt" --target "$tmp/out" > "$tmp/r.json"
  t1=$(now)
  awk "BEGIN{printf \"%.3f\n\", $t1 - $t0}" >> "$tmp/times"
  echo $(( $(cat "$tmp/rt") / 1024 )) >> "$tmp/rrss"
  node -e 'const v=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n").pop());console.log(v.bytesFetched)' "$tmp/r.json" >> "$tmp/fetched"
done
cmp -s "$tmp/out/disk/$f" <(node bin/snapferry.js cat "$DISK" "$f") || { echo "bench/image.sh: restored $f differs from the source" >&2; exit 1; }
t=$(median "$tmp/times"); b=$(median "$tmp/fetched")
printf 'restore of %s (1 MiB) from the image over SFTP: %.3f s (median of %s, cold), fetched %s of %s bytes (%.4f%%), peak RSS %s MiB\n' "$f" "$t" "$runs" "$b" "$archive" "$(awk "BEGIN{print 100 * $b / $archive}")" "$(sort -n "$tmp/rrss" | tail -1)"
echo 'targets: backup <= 1.0x the stock pipeline; one-file restore fetches < 1% and takes < 2 s; peak RSS <= 150 MB'
