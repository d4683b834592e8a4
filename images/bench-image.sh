#!/usr/bin/env bash
# A disk for bench/image.sh (image backup vs qemu-img convert | zstd | age | ssh): a 6 GiB
# monolithicSparse VMDK holding an ext4 volume (whole disk) with 1 GiB of incompressible seeded data,
# 768 MiB of base64 text (compressible, as logs and documents are), 1,000 small files and a 1 MiB file
# for the single-file restore: ~1.8 GiB of data, ~70% holes. Takes a minute and ~8 GiB of temporary space.
source "$(dirname "$0")/lib.sh"
begin bench-image "$0"
need mkfs.ext4 openssl qemu-img base64
export E2FSPROGS_FAKE_TIME=1700000000
tree=$OUT/.tree
cleanup() { rm -rf "$tree" "$OUT/ext4.raw"; [ -f "$OUT/.stamp" ] || rm -rf "$OUT"; }
trap cleanup EXIT
mkdir -p "$tree/big"
seeded 8101 $((1 << 30)) > "$tree/big/random.bin"
seeded 8102 $((576 << 20)) | base64 -w 76 > "$tree/big/text.txt"
for d in $(seq 0 9); do
  mkdir -p "$tree/small/d$d"
  for i in $(seq 0 99); do seeded $((d * 1000 + i)) $(( (i * 163 % 16 + 1) * 1024 )) > "$tree/small/d$d/f$i.dat"; done
done
seeded 77 $((1 << 20)) > "$tree/small/one-mib.bin"
truncate -s 6G "$OUT/ext4.raw"
mkfs.ext4 -q -F -L imagefs -U 0b9b1c1e-0000-4000-8000-0000000000c1 -E root_owner=0:0 -d "$tree" "$OUT/ext4.raw" >/dev/null
qemu-img convert -q -f raw -O vmdk -o subformat=monolithicSparse "$OUT/ext4.raw" "$OUT/disk.vmdk"
finish
