#!/usr/bin/env bash
# Filesystems for bench/fs.sh: one seeded tree of ~50,000 small files (200 B .. 8 KiB, in 200
# directories of 225 plus one directory of 5,000 entries) and 110 larger files of 4..12 MiB, about
# 1.1 GiB of data (issue 7 asks for >= 1 GiB and >= 50,000 files), as ext4 (written by `mkfs.ext4 -d`) and as NTFS (mkntfs, then filled through a
# real ntfs-3g mount, so the MFT and indexes are what ntfs-3g writes).
# Output: ext4.img, ntfs.img (2 GiB each, sparse). Needs root (/dev/fuse for ntfs-3g).
source "$(dirname "$0")/lib.sh"
begin bench-fs "$0"
need mkfs.ext4 mkntfs ntfs-3g python3
[ -e /dev/fuse ] || { echo "images/bench-fs.sh: /dev/fuse is needed for ntfs-3g" >&2; exit 1; }
export E2FSPROGS_FAKE_TIME=1700000000
tree=$OUT/.tree mnt=$OUT/.mnt
mkdir -p "$tree" "$mnt"
# never leave a mount behind, whatever fails; drop a half-built cache
cleanup() { if mountpoint -q "$mnt"; then umount "$mnt"; fi; rm -rf "$tree" "$mnt"; [ -f "$OUT/.stamp" ] || rm -rf "$OUT"; }
trap cleanup EXIT

# One python process writes the whole tree: an openssl per file (lib.sh's seeded) would take minutes
# for 50,000 files. random.Random(seed).randbytes is deterministic for a given Python major version.
python3 - "$tree" <<'PY'
import os, random, sys
root = sys.argv[1]
r = random.Random(20261125)
n = 0
for top in range(20):
    for sub in range(10):
        d = os.path.join(root, f"dir-{top:02d}", f"sub-{sub:02d}")
        os.makedirs(d)
        for i in range(225):
            with open(os.path.join(d, f"file-{i:04d}.dat"), "wb") as f:
                f.write(r.randbytes(r.randint(200, 8192)))
            n += 1
wide = os.path.join(root, "wide")
os.makedirs(wide)
for i in range(5000):
    with open(os.path.join(wide, f"entry-{i:05d}-{'w' * (i % 30)}.txt"), "wb") as f:
        f.write(r.randbytes(r.randint(200, 8192)))
    n += 1
big = os.path.join(root, "big")
os.makedirs(big)
for i in range(110):
    with open(os.path.join(big, f"big-{i:02d}.bin"), "wb") as f:
        f.write(r.randbytes(r.randint(4 << 20, 12 << 20)))
    n += 1
print(f"bench-fs: {n} files", file=sys.stderr)
PY

mkfs.ext4 -q -F -b 4096 -N 131072 -L bench-ext4 -U 0e000000-0000-4000-8000-0000000be4c4 -E root_owner=0:0 -d "$tree" "$OUT/ext4.img" 2G >/dev/null

truncate -s 2G "$OUT/ntfs.img"
# mkntfs warns on stderr that a file has no geometry (only booting would need it)
mkntfs -q -Q -F -L bench-ntfs "$OUT/ntfs.img" >/dev/null 2>&1
ntfs-3g -o big_writes "$OUT/ntfs.img" "$mnt"
(cd "$tree" && tar -cf - .) | (cd "$mnt" && tar -xf - --no-same-owner)
sync; umount "$mnt"
finish
