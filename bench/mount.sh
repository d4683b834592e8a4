#!/usr/bin/env bash
# snapferry mount against the stock FUSE and kernel readers, measured in the same run on the same
# images (images/bench-mount.sh: a 1 GiB file on NTFS and on ext4; images/bench-fs.sh: 50,050 files
# on NTFS):
#   seq:  dd of the 1 GiB file (1 MiB blocks) from snapferry mount vs ntfs-3g -o ro
#   walk: find -printf with a stat of every entry of the 50,050-file NTFS tree, snapferry vs ntfs-3g
#   rand: COUNT random 4 KiB preads (4 in flight) of the 1 GiB file: snapferry (NTFS and ext4) vs
#         ntfs-3g and the kernel's ext4 (loop, ro)
# Each measurement: mount, drop the page cache, time the job (not the mount), unmount. Peak RSS of
# the snapferry mount process (VmHWM) is read just before its unmount. Median of RUNS (default 3)
# rounds; the tools alternate within a round. ratio = snapferry throughput / stock throughput.
# seq is read SEQ_ROUNDS times (default 5) per mount, the page cache dropped before each read: one
# dd of ntfs-3g took 0.48-0.96 s between runs, so seq reports the median and the min of all
# RUNS x SEQ_ROUNDS reads of each reader.
# Must run as root (mounts, drop_caches, /dev/fuse).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/mount.sh: must run as root (mounts, /proc/sys/vm/drop_caches)" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "bench/mount.sh: /dev/fuse is needed" >&2; exit 1; }
for t in ntfs-3g mount umount find dd node; do command -v "$t" >/dev/null 2>&1 || { echo "bench/mount.sh: required tool '$t' is missing" >&2; exit 127; }; done
npm run --silent build
bash images/bench-mount.sh
bash images/bench-fs.sh
runs=${RUNS:-3}
count=${COUNT:-20000}
seq_rounds=${SEQ_ROUNDS:-5}
tmp=$(mktemp -d)
mnt=$tmp/mnt
mkdir -p "$mnt"
cleanup() { if mountpoint -q "$mnt"; then node bin/snapferry.js umount "$mnt" >/dev/null 2>&1 || umount "$mnt" || umount -l "$mnt"; fi; rm -rf "$tmp"; }
trap cleanup EXIT
now() { date +%s.%N; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# up TOOL IMG: mounts IMG read-only at $mnt; sets ROOT to the directory that holds the volume's files
up() {
  case $1 in
    snapferry) node bin/snapferry.js mount "$2" "$mnt" >/dev/null; ROOT=$mnt/$(basename "${2%.*}")/whole ;;
    ntfs-3g) ntfs-3g -o ro "$2" "$mnt"; ROOT=$mnt ;;
    kernel) mount -t ext4 -o ro,loop,noload "$2" "$mnt"; ROOT=$mnt ;;
  esac
}
down() {
  if [ "$1" = snapferry ]; then
    local pid; pid=$(awk -v m="$mnt" '$5 == m { for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 2); exit } }' /proc/self/mountinfo | sed 's/^snapferry://')
    awk '/VmHWM/ { print int($2 / 1024) }' "/proc/$pid/status" >> "$tmp/rss"
    node bin/snapferry.js umount "$mnt" >/dev/null
  else
    umount "$mnt"
    for _ in $(seq 50); do fuser -s "$2" 2>/dev/null || break; sleep 0.1; done
  fi
}

# measure NAME TOOL IMG: one cold run of job NAME; appends seconds (or IOPS for rand) to $tmp/NAME.TOOL
measure() {
  local job=$1 tool=$2 img=$3 t0 t1
  up "$tool" "$img"
  cold
  case $job in
    seq)
      for i in $(seq "$seq_rounds"); do
        [ "$i" -eq 1 ] || cold
        t0=$(now); dd if="$ROOT/big.bin" of=/dev/null bs=1M status=none; t1=$(now)
        awk "BEGIN{printf \"%.3f\n\", $t1 - $t0}" >> "$tmp/$job.$tool"
      done ;;
    walk)
      t0=$(now); find "$ROOT" -printf '%y %s %m %U %T@\n' > "$tmp/walk.$tool.listing"; t1=$(now)
      awk "BEGIN{printf \"%.3f\n\", $t1 - $t0}" >> "$tmp/$job.$tool" ;;
    rand-ntfs|rand-ext4)
      node dist/bench/randread.js "$ROOT/big.bin" "$count" 4 7 | sed -E 's/.*"iops":([0-9]+).*/\1/' >> "$tmp/$job.$tool" ;;
  esac
  down "$tool" "$img"
}

median() { sort -n "$1" | awk '{v[NR]=$1} END{print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
least() { sort -n "$1" | head -1; }
B=images/cache/bench-mount W=images/cache/bench-fs
plan=("seq snapferry $B/ntfs.img" "seq ntfs-3g $B/ntfs.img"
      "walk snapferry $W/ntfs.img" "walk ntfs-3g $W/ntfs.img"
      "rand-ntfs snapferry $B/ntfs.img" "rand-ntfs ntfs-3g $B/ntfs.img"
      "rand-ext4 snapferry $B/ext4.img" "rand-ext4 kernel $B/ext4.img")
for r in $(seq "$runs"); do
  echo "bench/mount.sh: round $r/$runs" >&2
  if [ $((r % 2)) -eq 0 ]; then mapfile -t order < <(printf '%s\n' "${plan[@]}" | tac); else order=("${plan[@]}"); fi
  for step in "${order[@]}"; do
    # shellcheck disable=SC2086
    measure $step
  done
done

n_sf=$(wc -l < "$tmp/walk.snapferry.listing"); n_3g=$(wc -l < "$tmp/walk.ntfs-3g.listing")
[ "$n_sf" = "$n_3g" ] || echo "bench/mount.sh: WARNING the walks differ: snapferry $n_sf entries, ntfs-3g $n_3g" >&2
printf '\n%-10s %-12s %9s %9s %16s %8s %9s\n' job tool median min throughput ratio 'min ratio'
for job in seq walk; do
  sf=$(median "$tmp/$job.snapferry") sfmin=$(least "$tmp/$job.snapferry")
  for tool in snapferry ntfs-3g; do
    m=$(median "$tmp/$job.$tool") lo=$(least "$tmp/$job.$tool")
    if [ $job = seq ]; then thr=$(awk "BEGIN{printf \"%.0f MB/s\", 1073.741824 / $m}"); else thr=$(awk "BEGIN{printf \"%.0f entries/s\", $n_3g / $m}"); fi
    ratio='' minratio=''
    if [ $tool != snapferry ]; then ratio=$(awk "BEGIN{printf \"%.2fx\", $m / $sf}") minratio=$(awk "BEGIN{printf \"%.2fx\", $lo / $sfmin}"); fi
    printf '%-10s %-12s %8ss %8ss %16s %8s %9s\n' "$job" "$tool" "$m" "$lo" "$thr" "$ratio" "$minratio"
  done
done
for job in rand-ntfs rand-ext4; do
  sf=$(median "$tmp/$job.snapferry")
  other=ntfs-3g; [ $job = rand-ext4 ] && other=kernel
  printf '%-10s %-12s %9s %9s %16s %8s\n' "$job" snapferry '' '' "$sf IOPS" ''
  o=$(median "$tmp/$job.$other")
  printf '%-10s %-12s %9s %9s %16s %8s\n' "$job" "$other" '' '' "$o IOPS" "$(awk "BEGIN{printf \"%.2fx\", $sf / $o}")"
done
printf '\npeak RSS of the snapferry mount process: %s MiB (max over %s mounts)\n' "$(sort -n "$tmp/rss" | tail -1)" "$(wc -l < "$tmp/rss")"
printf 'median of %s cold rounds (seq: of %s cold reads, %s per mount); seq/walk ratio = stock time / snapferry time (min ratio: of the fastest of each); rand ratio = snapferry IOPS / stock IOPS\n' "$runs" "$((runs * seq_rounds))" "$seq_rounds"
