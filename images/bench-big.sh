#!/usr/bin/env bash
# A filesystem whose backup archive is over 4 GiB, for bench/restore.sh (single-file restore from a
# big archive): ext4 (mkfs.ext4 -d) holding four 1 GiB seeded files and 1,000 small ones (1..16 KiB)
# in 10 directories, ~4.1 GiB of incompressible data, in a 5 GiB sparse image.
# Output: ext4.img. Takes a minute or two and ~4 GiB of temporary space.
source "$(dirname "$0")/lib.sh"
begin bench-big "$0"
need mkfs.ext4 openssl
export E2FSPROGS_FAKE_TIME=1700000000
tree=$OUT/.tree
cleanup() { rm -rf "$tree"; [ -f "$OUT/.stamp" ] || rm -rf "$OUT"; }
trap cleanup EXIT
mkdir -p "$tree/big"
for i in 1 2 3 4; do seeded $((9000 + i)) $((1 << 30)) > "$tree/big/part-$i.bin"; done
for d in $(seq 0 9); do
  mkdir -p "$tree/small/d$d"
  for i in $(seq 0 99); do seeded $((d * 1000 + i)) $(( (i * 163 % 16 + 1) * 1024 )) > "$tree/small/d$d/f$i.dat"; done
done
seeded 77 $((1 << 20)) > "$tree/small/one-mib.bin"
truncate -s 5G "$OUT/ext4.img"
mkfs.ext4 -q -F -L bigfs -U 0b9b1c1e-0000-4000-8000-0000000000b1 -E root_owner=0:0 -d "$tree" "$OUT/ext4.img" >/dev/null
finish
