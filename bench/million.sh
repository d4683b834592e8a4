#!/usr/bin/env bash
# Peak RSS of a backup of 1,000,000 files (images/bench-million.sh), against a full and then an
# incremental backup of the same volume to a local repository, with the stock pipeline's time for
# scale (the kernel's ext4 ro,noload mount → tar → zstd -3 → age, to a file), cold caches, same run.
# Issue 7's target: peak RSS <= 150 MB whatever the file count. Must run as root (mount, drop_caches).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/million.sh: must run as root" >&2; exit 1; }
for t in mount tar zstd age age-keygen /usr/bin/time; do command -v "$t" >/dev/null 2>&1 || { echo "bench/million.sh: '$t' is missing" >&2; exit 127; }; done
npm run --silent build
bash images/bench-million.sh
IMG=images/cache/bench-million/ext4.img
tmp=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
mnt=$tmp/mnt; mkdir -p "$mnt"
cleanup() { mountpoint -q "$mnt" && umount "$mnt"; rm -rf "$tmp"; }
trap cleanup EXIT
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
age-keygen -o "$tmp/key.txt" 2>/dev/null
R=$(age-keygen -y "$tmp/key.txt")

for kind in full incremental; do
  flag=(); [ "$kind" = incremental ] && flag=(--incremental)
  cold
  /usr/bin/time -f '%e %M' -o "$tmp/t.$kind" node bin/snapferry.js backup "$IMG" --repo "$tmp/repo" --recipient "$R" --state-dir "$tmp/state" --no-default-excludes "${flag[@]}" > "$tmp/out.$kind"
  read -r secs rss < "$tmp/t.$kind"
  printf 'snapferry %-11s backup of 1,000,000 files: %7.1f s, peak RSS %4d MiB   (%s)\n' "$kind" "$secs" $((rss / 1024)) "$(tail -1 "$tmp/out.$kind")"
done
cold
mount -t ext4 -o ro,loop,noload "$IMG" "$mnt"
t0=$(date +%s.%N)
tar -C "$mnt" -cf - . | zstd -q -3 -T1 | age -r "$R" > "$tmp/stock.age"
t1=$(date +%s.%N)
umount "$mnt"
printf 'stock ext4 mount | tar | zstd -3 | age:       %7.1f s\n' "$(awk "BEGIN{print $t1 - $t0}")"
echo 'target: peak RSS <= 150 MiB for a 1,000,000-file tree'
