#!/usr/bin/env bash
# Filesystem walk and bulk-read throughput against the stock tools, measured in the same run on the
# same images (images/bench-fs.sh: ~50,000 files, ~1.1 GiB, as ext4 and as NTFS):
#   walk: snapferry (bench/fs-walk.ts walk: the `ls -R` walk, a stat of every entry)
#         vs `find MNT -printf` (an lstat of every entry) on ntfs-3g -o ro / fuse2fs -o ro / the kernel's ext4
#   read: snapferry (bench/fs-walk.ts read: every file through `cat`'s 1 MiB reads)
#         vs `find MNT -type f -print0 | xargs -0 cat > /dev/null` on the same mounts
# Every measurement starts cold: the page cache is dropped and nothing is mounted. A stock tool's time
# includes its mount (opening the filesystem), as snapferry's includes openDisk/openFilesystem; neither
# includes process start-up nor the unmount. snapferry runs compiled (dist/, as bin/snapferry.js runs
# it), with the product's heap settings (src/cli/runtime.ts; SNAPFERRY_V8=default measures without).
# Prints the median of RUNS (default 3) rounds; the tools alternate within a round and the order
# flips every round. ratio = snapferry throughput / stock throughput (>= 1.00: snapferry is faster).
# Must run as root (mounts, drop_caches).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/fs.sh: must run as root (mounts, /proc/sys/vm/drop_caches)" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "bench/fs.sh: /dev/fuse is needed for ntfs-3g and fuse2fs" >&2; exit 1; }
if ! command -v fuse2fs >/dev/null 2>&1; then
  echo "bench/fs.sh: installing fuse2fs" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fuse2fs >/dev/null
fi
for t in ntfs-3g fuse2fs mount umount find xargs node; do
  command -v "$t" >/dev/null 2>&1 || { echo "bench/fs.sh: required tool '$t' is missing" >&2; exit 127; }
done

npm run --silent build
t_build=$(date +%s.%N)
bash images/bench-fs.sh
echo "images/bench-fs.sh: $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t_build}") s (0 when cached)" >&2
dir=images/cache/bench-fs
runs=${RUNS:-3}
tmp=$(mktemp -d)
mnt=$tmp/mnt
mkdir -p "$mnt"
cleanup() { if mountpoint -q "$mnt"; then umount "$mnt" || umount -l "$mnt"; fi; rm -rf "$tmp"; }
trap cleanup EXIT

now() { date +%s.%N; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# stock_mount TOOL IMG: mounts IMG read-only at $mnt the way TOOL does
stock_mount() {
  case $1 in
    ntfs-3g) ntfs-3g -o ro "$2" "$mnt" ;;
    fuse2fs) fuse2fs -o ro,fakeroot "$2" "$mnt" >/dev/null ;;
    kernel) mount -t ext4 -o ro,loop,noload "$2" "$mnt" ;;
  esac
  mountpoint -q "$mnt" || { echo "bench/fs.sh: $1 did not mount $2" >&2; exit 1; }
}
stock_umount() {
  umount "$mnt"
  # a FUSE daemon exits after the unmount returns: wait until it has let go of the image
  for _ in $(seq 50); do fuser -s "$2" 2>/dev/null || return 0; sleep 0.1; done
}

# measure FS TOOL MODE IMG: one cold run; appends "seconds" to $tmp/FS.TOOL.MODE, and for snapferry
# its JSON to $tmp/FS.snapferry.MODE.json; stock walks leave their listing for the count check.
measure() {
  local fs=$1 tool=$2 mode=$3 img=$4 t0 t1
  cold
  if [ "$tool" = snapferry ]; then
    local out; out=$(node dist/bench/fs-walk.js "$img" "$mode") || { echo "bench/fs.sh: snapferry $mode failed on $img: $out" >&2; exit 1; }
    echo "$out" >> "$tmp/$fs.snapferry.$mode.json"
    sed -E 's/.*"seconds":([0-9.]+).*/\1/' <<<"$out" >> "$tmp/$fs.snapferry.$mode"
    return
  fi
  t0=$(now)
  stock_mount "$tool" "$img"
  if [ "$mode" = walk ]; then
    find "$mnt" -printf '%y %s %m %U\n' > "$tmp/$fs.$tool.listing"
  else
    find "$mnt" -type f -print0 | xargs -0 cat > /dev/null
  fi
  t1=$(now)
  stock_umount "$tool" "$img"
  awk "BEGIN{printf \"%.3f\n\", $t1 - $t0}" >> "$tmp/$fs.$tool.$mode"
}

median() { sort -n "$1" | awk '{v[NR]=$1} END{print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

declare -A STOCK=([ntfs]="ntfs-3g" [ext4]="fuse2fs kernel")
for fs in ntfs ext4; do
  img=$dir/$fs.img
  order=()
  for mode in walk read; do
    order+=("snapferry $mode")
    for tool in ${STOCK[$fs]}; do order+=("$tool $mode"); done
  done
  for r in $(seq "$runs"); do
    echo "bench/fs.sh: $fs round $r/$runs" >&2
    if [ $((r % 2)) -eq 0 ]; then mapfile -t seq_ < <(printf '%s\n' "${order[@]}" | tac); else seq_=("${order[@]}"); fi
    for step in "${seq_[@]}"; do
      read -r tool mode <<<"$step"
      measure "$fs" "$tool" "$mode" "$img"
    done
  done
done

# What each side saw must agree: files, directories and bytes of the stock walk vs snapferry's.
field() { sed -E "s/.*\"$2\":([0-9.]+).*/\1/" <<<"$1"; }
spread() { sort -n "$1" | awk 'NR==1{lo=$1} {hi=$1} END{printf "%.2f-%.2f", lo, hi}'; }
printf '\n%-6s %-5s %-22s %9s %11s %14s %8s %10s\n' fs mode tool median 'min-max' throughput ratio 'peak RSS'
for fs in ntfs ext4; do
  last=$(tail -1 "$tmp/$fs.snapferry.read.json")
  files=$(field "$last" files) dirs=$(field "$last" dirs) bytes=$(field "$last" bytes)
  for tool in ${STOCK[$fs]}; do
    # the stock listing includes the mount point itself; snapferry's walk does not yield the root
    read -r sfiles sdirs sbytes < <(awk '$1=="f"{f++; b+=$2} $1=="d"{d++} END{print f+0, d-1, b+0}' "$tmp/$fs.$tool.listing")
    if [ "$sfiles" != "$files" ] || [ "$sbytes" != "$bytes" ] || [ "$sdirs" != "$dirs" ]; then
      echo "bench/fs.sh: WARNING $fs: $tool sees $sfiles files, $sdirs dirs, $sbytes bytes; snapferry read $files files, $dirs dirs, $bytes bytes" >&2
    fi
  done
  entries=$((files + dirs))
  for mode in walk read; do
    sf=$(median "$tmp/$fs.snapferry.$mode")
    rss=$(sed -E 's/.*"peakRssMiB":([0-9]+).*/\1/' "$tmp/$fs.snapferry.$mode.json" | sort -n | tail -1)
    thr() { if [ "$mode" = walk ]; then awk "BEGIN{printf \"%.0f files/s\", $entries / $1}"; else awk "BEGIN{printf \"%.1f MB/s\", $bytes / 1e6 / $1}"; fi; }
    printf '%-6s %-5s %-22s %8ss %11s %14s %8s %6s MiB\n' "$fs" "$mode" snapferry "$sf" "$(spread "$tmp/$fs.snapferry.$mode")" "$(thr "$sf")" '' "$rss"
    for tool in ${STOCK[$fs]}; do
      st=$(median "$tmp/$fs.$tool.$mode")
      label=$tool; [ "$tool" = kernel ] && label='kernel ext4 (loop)'; [ "$tool" = fuse2fs ] && label='fuse2fs -o ro'; [ "$tool" = ntfs-3g ] && label='ntfs-3g -o ro'
      printf '%-6s %-5s %-22s %8ss %11s %14s %7sx\n' "$fs" "$mode" "$label" "$st" "$(spread "$tmp/$fs.$tool.$mode")" "$(thr "$st")" "$(awk "BEGIN{printf \"%.2f\", $st / $sf}")"
    done
  done
done
printf '\n%s entries (files+dirs), %s files, %s bytes per image; median of %s cold rounds; ratio = snapferry throughput / stock throughput.\n' \
  "$entries" "$files" "$bytes" "$runs"
