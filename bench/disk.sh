#!/usr/bin/env bash
# Sequential export throughput against qemu-img convert -O raw, measured in the same run on the same
# images (images/bench-disk.sh): a 1 GiB monolithicSparse disk and a 3-deep chain on top of it.
# Prints each tool's best-of-N wall time, the ratio (qemu time / snapferry time: >= 1.0 means
# snapferry is at least as fast), snapferry's peak RSS, and checks the outputs are identical.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
npm run --silent build
bash images/bench-disk.sh
dir=images/cache/bench-disk
tmp=${BENCH_TMP:-$(mktemp -d -p "$PWD/images/cache")}
trap 'rm -rf "$tmp"' EXIT
runs=${RUNS:-3}

best() { # best CMD... -> "seconds maxrss_kb" of the fastest of $runs runs
  local b="" m=0
  for _ in $(seq "$runs"); do
    rm -f "$tmp/out.raw"
    /usr/bin/time -o "$tmp/time" -f '%e %M' "$@" >/dev/null 2>&1
    local r; r=$(tail -1 "$tmp/time")
    local s=${r% *} k=${r#* }
    if [ -z "$b" ] || awk "BEGIN{exit !($s < $b)}"; then b=$s; fi
    [ "$k" -gt "$m" ] && m=$k
  done
  echo "$b $m"
}

printf '%-34s %10s %10s %8s %12s\n' image qemu-img snapferry ratio 'peak RSS'
for img in big.vmdk delta3.vmdk; do
  # warm the page cache once for both
  cat "$dir"/*.vmdk > /dev/null
  read -r qs _ < <(best qemu-img convert -f vmdk -O raw "$dir/$img" "$tmp/out.raw")
  cp --sparse=always "$tmp/out.raw" "$tmp/qemu.raw"
  read -r ss srss < <(best node bin/snapferry.js export --force --no-progress "$dir/$img" "$tmp/out.raw")
  cmp -s "$tmp/out.raw" "$tmp/qemu.raw" || { echo "bench: $img export differs from qemu-img's" >&2; exit 1; }
  ratio=$(awk "BEGIN{printf \"%.2f\", $qs / $ss}")
  label="$img ($( [ $img = big.vmdk ] && echo '1 GiB, 512 MiB data' || echo '3-deep chain'))"
  printf '%-34s %9ss %9ss %7sx %9s MiB\n' "$label" "$qs" "$ss" "$ratio" "$((srss / 1024))"
done
