#!/usr/bin/env bash
# ext images at the sizes where 32-bit arithmetic and shallow trees stop being enough, filled by the
# kernel through a loop mount:
#  - htree directories of 50,000 entries: ext4-bigdir.img (4 KiB blocks, no large_dir: two index
#    levels, dx_root -> dx_node -> leaf, i.e. indirect_levels 1, the most ext4 allows without
#    large_dir) and ext4-largedir.img (1 KiB blocks, large_dir, 250-byte names: three index levels,
#    indirect_levels 2). The depths are checked with debugfs htree_dump; a shallower tree fails the build.
#  - sparse files past 4 GiB and past 16 GiB, and fallocated (unwritten) ranges partly written, on
#    ext4 with extents (ext4-bigdir.img, /huge); the same sparse files on ext2 and ext3 with 4 KiB
#    blocks, where data past 4 GiB + 4 MiB + 48 KiB lives under the triple indirect block.
# Every image stays small on disk (sparse). Needs root (loop mounts); nothing stays mounted.
source "$(dirname "$0")/lib.sh"
begin ext-big "$0"
need mkfs.ext2 mkfs.ext3 mkfs.ext4 mount umount mountpoint python3 fallocate debugfs
export E2FSPROGS_FAKE_TIME=1700000000
mnt=$OUT/.mnt; mkdir -p "$mnt"
cleanup() { mountpoint -q "$mnt" && umount "$mnt"; [ -f "$OUT/.stamp" ] || rm -rf "$OUT"; }
trap cleanup EXIT

# bigdir DIR COUNT NAMELEN SEED: COUNT empty files (every 997th a 3-byte file, every 4999th a
# subdirectory) named "<6 digits>-" padded to NAMELEN bytes with a seeded mix of letters.
bigdir() {
  mkdir "$1"
  python3 - "$@" <<'PY'
import os, random, sys
d, count, namelen, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = random.Random(seed)
alpha = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-'
for i in range(count):
    name = f'{i:06d}-' + ''.join(r.choice(alpha) for _ in range(namelen - 7))
    p = os.path.join(d, name)
    if i % 4999 == 4998:
        os.mkdir(p)
    elif i % 997 == 996:
        with open(p, 'w') as f: f.write(f'{i}\n')
    else:
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
PY
}

# htree_levels IMG DIR: dx_root's indirect_levels, as debugfs reads it
htree_levels() {
  debugfs -R "htree_dump $2" "$1" 2>/dev/null | awk '/Indirect levels:/ { n = $3 } END { print n + 0 }'
}
expect_levels() {
  local got; got=$(htree_levels "$1" "$2")
  if [ "$got" -lt "$3" ]; then echo "images: $1:$2 has htree indirect_levels $got, wanted >= $3" >&2; exit 1; fi
}

# sparse FILE SIZE SEED OFFSET:LEN...: a sparse file of SIZE bytes holding seeded data at each range
sparse() {
  python3 - "$@" <<'PY'
import os, random, sys
path, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = random.Random(seed)
with open(path, 'wb') as f:
    f.truncate(size)
    for rng in sys.argv[4:]:
        off, n = (int(x) for x in rng.split(':'))
        f.seek(off); f.write(r.randbytes(n))
PY
}

G=$((1 << 30)); M=$((1 << 20))
# huge DIR SEED: the sparse files past 4 GiB (across 2^32 bytes) and past 16 GiB (across 2^34)
huge() {
  mkdir -p "$1"
  # 4 KiB blocks: direct 0..11, single to block 1035, double to 1049611 (4 GiB + 4 MiB + 48 KiB), then triple
  local triple=$(((12 + 1024 + 1024 * 1024) * 4096))
  sparse "$1/past-4g" $((4 * G + G / 2)) "$2" 0:65536 $((4 * G - M / 2)):$M $((triple - 70000)):140000 $((4 * G + 100 * M + 123)):$((2 * M)) $((4 * G + G / 2 - 5000)):5000
  sparse "$1/past-16g" $((17 * G + 12345)) $(($2 + 1)) $((16 * G - M / 4)):$M $((16 * G + 512 * M + 7)):$((3 * M)) $((17 * G + 12345 - 3000)):3000
}

# ---- ext4, 4 KiB blocks: the two-level htree, the big sparse files, fallocated ranges
img=$OUT/ext4-bigdir.img
truncate -s 256M "$img"
mkfs.ext4 -q -F -b 4096 -N 65536 -L bigdir -U 0e000000-0000-4000-8000-0000000000b1 -E root_owner=0:0 "$img" >/dev/null
mount -o loop,noinit_itable "$img" "$mnt"
bigdir "$mnt/big" 50000 48 31
huge "$mnt/huge" 32
# unwritten extents (ext4_ext_convert_to_initialized splits them as writes land)
fallocate -l 64M "$mnt/huge/fallocated"
python3 - "$mnt/huge/fallocated" <<'PY'
import os, random, sys
r = random.Random(33)
fd = os.open(sys.argv[1], os.O_WRONLY)
for off, n in ((4 << 20, 8192), ((20 << 20) + 17, 100), (60 << 20, 1 << 20), ((64 << 20) - 300, 300)):
    os.pwrite(fd, r.randbytes(n), off)
os.close(fd)
PY
fallocate -n -o 64M -l 16M "$mnt/huge/fallocated"
# unwritten extents past 4 GiB in a sparse file, one of them partly written
truncate -s $((5 * G)) "$mnt/huge/fallocated-past-4g"
fallocate -o $((4 * G + M)) -l $((32 * M)) "$mnt/huge/fallocated-past-4g"
python3 - "$mnt/huge/fallocated-past-4g" <<'PY'
import os, random, sys
r = random.Random(34)
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, r.randbytes(12288), (4 << 30) + (9 << 20) + 4096)
os.close(fd)
PY
sync; umount "$mnt"
expect_levels "$img" /big 1

# ---- ext4, 1 KiB blocks, large_dir: a three-level htree (indirect_levels 2)
img=$OUT/ext4-largedir.img
truncate -s 160M "$img"
mkfs.ext4 -q -F -b 1024 -O large_dir -N 65536 -L largedir -U 0e000000-0000-4000-8000-0000000000b2 -E root_owner=0:0 "$img" >/dev/null
mount -o loop,noinit_itable "$img" "$mnt"
bigdir "$mnt/big" 50000 250 35
sync; umount "$mnt"
expect_levels "$img" /big 2

# ---- ext2 and ext3, 4 KiB blocks: the same sparse files through double and triple indirect blocks
for kind in ext2 ext3; do
  img=$OUT/$kind-big.img
  truncate -s 32M "$img"
  "mkfs.$kind" -q -F -b 4096 -L "$kind-big" "$img" >/dev/null
  mount -o loop "$img" "$mnt"
  huge "$mnt/huge" 40
  sync; umount "$mnt"
done
rmdir "$mnt"
finish
