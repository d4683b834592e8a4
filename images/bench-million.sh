#!/usr/bin/env bash
# A volume of 1,000,000 files for bench/million.sh (issue 7: a backup's peak RSS stays bounded for a
# 1,000,000-file tree): ext4 (mkfs.ext4 -d) with 1,000 directories of 1,000 files of 0..64 bytes,
# 1 KiB blocks (a block per file: ~1 GiB), in a 3 GiB sparse image. Takes a few minutes; needs ~1 GiB of temporary space.
# Output: ext4.img.
source "$(dirname "$0")/lib.sh"
begin bench-million "$0"
need mkfs.ext4 python3
export E2FSPROGS_FAKE_TIME=1700000000
tree=$OUT/.tree
cleanup() { rm -rf "$tree"; [ -f "$OUT/.stamp" ] || rm -rf "$OUT"; }
trap cleanup EXIT
python3 - "$tree" <<'PY'
import os, random, sys
root = sys.argv[1]
r = random.Random(20261205)
for d in range(1000):
    p = os.path.join(root, f"d{d:03d}")
    os.makedirs(p)
    for i in range(1000):
        with open(os.path.join(p, f"f{i:03d}"), "wb") as f:
            f.write(r.randbytes(r.randint(0, 64)))
PY
truncate -s 3G "$OUT/ext4.img"
mkfs.ext4 -q -F -b 1024 -N 1100000 -I 256 -L million -U 0e000000-0000-4000-8000-00000100000a -E root_owner=0:0 -d "$tree" "$OUT/ext4.img" >/dev/null
finish
