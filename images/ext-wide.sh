#!/usr/bin/env bash
# One ext4 directory of 200,000 entries, for the mount's streaming-listing test (test/mount/wide.test.ts):
# /wide (an htree directory) holds f000000 .. f199999, empty files except f000000, f050000,
# f100000, f150000 and f199999 (5000 seeded bytes each).
# Output: ext4.img (256 MiB, sparse).
#
# Made by the kernel through a loop mount, not by `mkfs.ext4 -d`: e2fsprogs inserting 200,000 names
# into one directory took more than 6 minutes of CPU; the kernel's htree inserts take seconds.
# Needs root (a loop mount); nothing stays mounted.
source "$(dirname "$0")/lib.sh"
begin ext-wide "$0"
need mkfs.ext4 mount umount mountpoint python3 openssl
export E2FSPROGS_FAKE_TIME=1700000000
mnt=$OUT/.mnt; mkdir -p "$mnt"
cleanup() { mountpoint -q "$mnt" && umount "$mnt"; [ -f "$OUT/.stamp" ] || rm -rf "$OUT"; }
trap cleanup EXIT

truncate -s 256M "$OUT/ext4.img"
# -N: 200,000 files need that many inodes (the default ratio gives 65,536 for 256 MiB)
mkfs.ext4 -q -F -b 4096 -N 210000 -L wide -U 0e000000-0000-4000-8000-0000000000c1 -E root_owner=0:0 "$OUT/ext4.img" >/dev/null
mount -o loop "$OUT/ext4.img" "$mnt"
mkdir "$mnt/wide"
# one python process creating every file (200,000 `touch` processes would take minutes)
python3 - "$mnt/wide" <<'PY'
import os, sys
d = sys.argv[1]
for i in range(200000):
    os.close(os.open(os.path.join(d, f"f{i:06d}"), os.O_CREAT | os.O_WRONLY, 0o644))
PY
for i in 0 50000 100000 150000 199999; do seeded $((1000 + i)) 5000 > "$mnt/wide/$(printf 'f%06d' "$i")"; done
sync; umount "$mnt"
rmdir "$mnt"
finish
