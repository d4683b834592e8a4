#!/usr/bin/env bash
# Images for bench/mount.sh's sequential and random reads: one 1 GiB seeded file (big.bin), on NTFS
# (mkntfs, written through a real ntfs-3g mount) and on ext4 (mkfs.ext4 -d). The 50,000-file tree
# walk uses images/bench-fs.sh's NTFS image. Output: ntfs.img, ext4.img (1.5 GiB each, sparse).
# Needs root (/dev/fuse for ntfs-3g).
source "$(dirname "$0")/lib.sh"
begin bench-mount "$0"
need mkfs.ext4 mkntfs ntfs-3g openssl
[ -e /dev/fuse ] || { echo "images/bench-mount.sh: /dev/fuse is needed for ntfs-3g" >&2; exit 1; }
export E2FSPROGS_FAKE_TIME=1700000000
tree=$OUT/.tree mnt=$OUT/.mnt
mkdir -p "$tree" "$mnt"
cleanup() { if mountpoint -q "$mnt"; then umount "$mnt"; fi; rm -rf "$tree" "$mnt"; [ -f "$OUT/.stamp" ] || rm -rf "$OUT"; }
trap cleanup EXIT

seeded 20261126 $((1 << 30)) > "$tree/big.bin"
mkfs.ext4 -q -F -b 4096 -L bench-mount -U 0e000000-0000-4000-8000-00000000b16f -E root_owner=0:0 -d "$tree" "$OUT/ext4.img" 1536M >/dev/null
truncate -s 1536M "$OUT/ntfs.img"
mkntfs -q -Q -F -L bench-mount "$OUT/ntfs.img" >/dev/null 2>&1
ntfs-3g -o big_writes "$OUT/ntfs.img" "$mnt"
cp "$tree/big.bin" "$mnt/big.bin"
sync; umount "$mnt"
finish
