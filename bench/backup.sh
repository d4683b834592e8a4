#!/usr/bin/env bash
# snapferry backup against the stock pipeline, in the same run, on the same images (images/bench-fs.sh:
# 50,110 files, ~1.1 GiB, on NTFS and on ext4), to a real sshd on 127.0.0.1 (SFTP):
#   ours:  snapferry backup IMG --repo sftp://root@127.0.0.1:PORT/... --recipient R
#   stock: mount (ntfs-3g -o ro | the kernel's ext4 ro,noload) && tar -cf - . | zstd -3 -T1 | age -r R | ssh ... 'cat > F'
#   zstd:  zstd -3 -T1 of the same tar stream from a warm file (the compression ceiling)
# Each timed run starts cold (page cache dropped). Peak RSS of snapferry from /usr/bin/time.
# Then single-file restore: one file of the NTFS archive, bytes fetched against the archive's size.
# Median of RUNS (default 3). Must run as root (mounts, drop_caches, sshd).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/backup.sh: must run as root" >&2; exit 1; }
for t in ntfs-3g mount tar zstd age age-keygen ssh ssh-keygen /usr/sbin/sshd /usr/bin/time; do command -v "$t" >/dev/null 2>&1 || { echo "bench/backup.sh: '$t' is missing" >&2; exit 127; }; done
npm run --silent build
bash images/bench-fs.sh
runs=${RUNS:-3}
W=images/cache/bench-fs
tmp=$(mktemp -d)
mnt=$tmp/mnt; ssh=$tmp/ssh; mkdir -p "$mnt"
cleanup() { mountpoint -q "$mnt" && umount "$mnt"; [ -f "$ssh/pid" ] && kill "$(cat "$ssh/pid")" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }

source scripts/local-sshd.sh
start_local_sshd "$ssh"
port=$PORT
sshopt=(-i "$ssh/client" -p "$port" -o UserKnownHostsFile="$ssh/known_hosts" -o BatchMode=yes)
age-keygen -o "$tmp/key.txt" 2>/dev/null
R=$(age-keygen -y "$tmp/key.txt")

up() { if [ "$1" = ntfs ]; then ntfs-3g -o ro "$W/ntfs.img" "$mnt"; else mount -t ext4 -o ro,loop,noload "$W/ext4.img" "$mnt"; fi; }
median() { sort -n "$1" | awk '{v[NR]=$1} END{print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

for r in $(seq "$runs"); do
  echo "bench/backup.sh: round $r/$runs" >&2
  for fs in ntfs ext4; do
    rm -rf "$tmp/repo-$fs" "$tmp/state"
    cold
    /usr/bin/time -f '%e %M' -o "$tmp/t" node bin/snapferry.js backup "$W/$fs.img" --repo "sftp://root@127.0.0.1:$port$tmp/repo-$fs" \
      --ssh-key "$ssh/client" --known-hosts "$ssh/known_hosts" --recipient "$R" --state-dir "$tmp/state" --no-default-excludes > "$tmp/ours.$fs.out"
    read -r secs rss < "$tmp/t"; echo "$secs" >> "$tmp/ours.$fs"; echo $((rss / 1024)) >> "$tmp/rss"
    cold
    up "$fs"
    t0=$(now)
    tar -C "$mnt" -cf - . | zstd -q -3 -T1 | age -r "$R" | ssh "${sshopt[@]}" root@127.0.0.1 "cat > $tmp/stock.$fs.age"
    t1=$(now)
    if [ "$r" = 1 ]; then tar -C "$mnt" -cf "$tmp/tree.$fs.tar" .; fi
    umount "$mnt"
    awk "BEGIN{printf \"%.3f\n\", $t1 - $t0}" >> "$tmp/stock.$fs"
    cat "$tmp/tree.$fs.tar" > /dev/null # warm: the ceiling is zstd's, not the disk's (cold() dropped it)
    t0=$(now); zstd -q -3 -T1 -c "$tmp/tree.$fs.tar" > /dev/null; t1=$(now)
    awk "BEGIN{printf \"%.3f\n\", $t1 - $t0}" >> "$tmp/zstd.$fs"
  done
done

printf '\n%-6s %12s %12s %10s %14s %14s %10s\n' fs snapferry stock ratio 'ours MB/s' 'zstd -3 MB/s' 'vs zstd'
for fs in ntfs ext4; do
  o=$(median "$tmp/ours.$fs"); s=$(median "$tmp/stock.$fs"); z=$(median "$tmp/zstd.$fs")
  bytes=$(stat -c %s "$tmp/tree.$fs.tar")
  printf '%-6s %11ss %11ss %9s %14s %14s %9s\n' "$fs" "$o" "$s" "$(awk "BEGIN{printf \"%.2fx\", $o / $s}")" \
    "$(awk "BEGIN{printf \"%.0f\", $bytes / $o / 1e6}")" "$(awk "BEGIN{printf \"%.0f\", $bytes / $z / 1e6}")" "$(awk "BEGIN{printf \"%.0f%%\", 100 * $z / $o}")"
  echo "  archive: ours $(du -b "$tmp/repo-$fs/archives/"*.tar.zst.age | cut -f1) bytes, stock $(stat -c %s "$tmp/stock.$fs.age") bytes"
done
printf 'peak RSS of snapferry backup: %s MiB (max over %s runs)\n' "$(sort -n "$tmp/rss" | tail -1)" "$(wc -l < "$tmp/rss")"
printf 'ratio = snapferry wall time / stock pipeline wall time (target <= 1.0, goal 0.6); vs zstd = zstd -3 -T1 time / snapferry time on the same tar bytes\n'

# single-file restore over SFTP: one file of the NTFS archive
f=$(node bin/snapferry.js ls --json "$W/ntfs.img" whole/ 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const l of s.trim().split("\n")){const v=JSON.parse(l);if(v.type==="dir"){console.log(v.path);break}}})')
file=$(node bin/snapferry.js ls --json "$W/ntfs.img" "whole$f" 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const l of s.trim().split("\n")){const v=JSON.parse(l);if(v.type==="file"){console.log(v.path);break}}})')
t0=$(now)
node bin/snapferry.js restore --json --repo "sftp://root@127.0.0.1:$port$tmp/repo-ntfs" --ssh-key "$ssh/client" --known-hosts "$ssh/known_hosts" latest "ntfs/whole$file" --identity "$tmp/key.txt" --target "$tmp/one" > "$tmp/one.json"
t1=$(now)
size=$(du -b "$tmp/repo-ntfs/archives/"*.tar.zst.age | cut -f1)
fetched=$(node -e 'const v=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n").pop());console.log(v.bytesFetched)' "$tmp/one.json")
printf 'single-file restore of ntfs/whole%s: %.2f s, fetched %s of %s archive bytes (%.3f%%)\n' "$file" "$(awk "BEGIN{print $t1 - $t0}")" "$fetched" "$size" "$(awk "BEGIN{print 100 * $fetched / $size}")"
