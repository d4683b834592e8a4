#!/usr/bin/env bash
# ext2/3/4 test images, made by mkfs.ext2/3/4 and filled by the kernel through a loop mount (and
# one by `mkfs.ext4 -d`), covering what src/fs/ext must read: block sizes 1/2/4/64 KiB, 32/64-bit
# group descriptors, flex_bg, meta_bg, sparse_super2, huge_file, 128/256-byte inodes, indirect maps
# up to triple, extent trees of depth 2, uninitialized extents, sparse files, inline_data, htree
# directories, hard links, symlinks of every length class, devices, fifos, sockets, xattrs in the
# inode and in a block, non-UTF-8 and 255-byte names, timestamps before 1970 and past 2038.
# Needs root (loop mounts). Every image is unmounted before finish; nothing stays mounted.
source "$(dirname "$0")/lib.sh"
begin ext "$0"
need mkfs.ext2 mkfs.ext3 mkfs.ext4 mount umount setfattr python3 fallocate mknod openssl debugfs
export E2FSPROGS_FAKE_TIME=1700000000
mnt=$OUT/.mnt; mkdir -p "$mnt"
# ERR traps do not reach into functions without set -E; EXIT always runs: unmount, and drop a half-built cache.
cleanup() { mountpoint -q "$mnt" && umount "$mnt"; [ -f "$OUT/.stamp" ] || rm -rf "$OUT"; }
trap cleanup EXIT

# fill DIR SEED BIG: the common tree. BIG=1 adds the 3,000-entry directory and the fragmented file.
fill() {
  local d=$1 s=$2 big=$3
  mkdir -p "$d/a/b/c" "$d/empty-dir" "$d/data" "$d/special" "$d/names" "$d/times" "$d/links" "$d/xattr"
  echo "hello ext $s" > "$d/hello.txt"
  : > "$d/empty-file"
  seeded "$s" 300000 > "$d/data/seeded-300k.bin"
  seeded $((s + 1)) 5000 > "$d/a/b/c/deep.bin"
  seeded $((s + 2)) 70000 > "$d/links/hard1"
  ln "$d/links/hard1" "$d/links/hard2"
  ln "$d/links/hard1" "$d/a/hard3"
  # symlinks: the fast/slow boundary is 60 bytes (i_block holds < 60 characters, EXT4_N_BLOCKS * 4)
  for n in 1 59 60 61 200 1000; do ln -s "$(printf 't%.0s' $(seq 1 "$n"))" "$d/links/sym-$n"; done
  ln -s ../hello.txt "$d/links/rel"
  ln -s /nonexistent/target "$d/links/dangling"
  mknod "$d/special/blk" b 8 1
  mknod "$d/special/chr" c 1 3
  mknod "$d/special/chr-big" c 300 70000
  mkfifo "$d/special/fifo"
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$d/special/sock"
  # names: non-UTF-8 bytes, 255 bytes, non-Latin
  : > "$d/names/$(printf 'latin1-\xe9t\xe9-\xff\xfe')"
  : > "$d/names/$(printf 'n%.0s' $(seq 1 255))"
  echo unicode > "$d/names/日本語-ünïcödé-Ω"
  : > "$d/names/with space and 'quote'"
  # timestamps: before 1970, past 2038 (needs the extra epoch bits of 256-byte inodes), nanoseconds
  echo past > "$d/times/1960"; touch -h -d '1960-06-01 12:00:00.5' "$d/times/1960"
  echo future > "$d/times/2100"; touch -h -d '2100-01-01 00:00:00.25' "$d/times/2100"
  echo ns > "$d/times/ns"; touch -h -d '2001-02-03 04:05:06.123456789' "$d/times/ns"
  # modes and owners (32-bit uid/gid)
  echo 0000 > "$d/mode-0000"; chmod 0000 "$d/mode-0000"
  echo suid > "$d/setuid"; chmod 4755 "$d/setuid"
  echo sgid > "$d/setgid"; chmod 2711 "$d/setgid"
  mkdir "$d/sticky"; chmod 1777 "$d/sticky"
  echo owner > "$d/owner-70000"; chown 70000:80000 "$d/owner-70000"
  # xattrs: small in-inode, a big one that forces an xattr block (this kernel refuses values past
  # ~960 bytes with ENOSPC, so 900), other namespaces
  echo x > "$d/xattr/small"; setfattr -n user.small -v hello "$d/xattr/small"
  echo x > "$d/xattr/big"; setfattr -n user.big -v "0x$(seeded $((s + 3)) 900 | od -An -tx1 -v | tr -d ' \n')" "$d/xattr/big"
  setfattr -n user.second -v two "$d/xattr/big"
  echo x > "$d/xattr/ns"; setfattr -n trusted.t -v trusted-value "$d/xattr/ns"; setfattr -n security.s -v security-value "$d/xattr/ns"
  setfattr -n user.empty "$d/xattr/ns"
  mkdir "$d/xattr/dir"; setfattr -n user.on-dir -v dirvalue "$d/xattr/dir"
  # sparse: data at 0, 5 MiB and the last byte of 10 MiB
  python3 - "$d/data/sparse" "$s" <<'PY'
import sys, random
r = random.Random(int(sys.argv[2]))
with open(sys.argv[1], 'wb') as f:
    for off in (0, 5 << 20, (10 << 20) - 1):
        f.seek(off); f.write(bytes(r.getrandbits(8) for _ in range(min(8192, (10 << 20) - off))))
PY
  if [ "$big" = 1 ]; then
    mkdir "$d/htree"
    python3 - "$d/htree" <<'PY'
import sys, os
for i in range(3000):
    open(os.path.join(sys.argv[1], f"entry-{i:05d}-{'x' * (i % 40)}"), 'w').close()
PY
    # fragmented: every other block written (one extent / one map run per block)
    python3 - "$d/data/fragmented" "$s" <<'PY'
import sys, os, random
r = random.Random(int(sys.argv[2]))
bs = os.statvfs(os.path.dirname(sys.argv[1])).f_bsize
with open(sys.argv[1], 'wb') as f:
    for i in range(0, 900, 2):
        f.seek(i * bs); f.write(bytes(r.getrandbits(8) for _ in range(bs)))
PY
  fi
}

# fill_mounted DIR SEED: what only a mounted kernel filesystem can make: fallocated (uninitialized)
# extents, partly written.
fill_mounted() {
  local d=$1 s=$2
  fallocate -l 1M "$d/data/fallocated"
  seeded $((s + 4)) 8192 | dd of="$d/data/fallocated" bs=4096 seek=64 conv=notrunc status=none
  fallocate -l 256K "$d/data/fallocated-keep"; fallocate -n -o 256K -l 512K "$d/data/fallocated-keep"
}

# mk IMG SIZE MKFS-ARGS... : makes IMG, mounts it, fills it, unmounts it
mk() {
  local img=$1 size=$2 seed=$3 big=$4; shift 4
  truncate -s "$size" "$OUT/$img"
  "$@" -q -F "$OUT/$img" >/dev/null
  local features; features=$(debugfs -R features "$OUT/$img" 2>/dev/null)
  mount -o loop "$OUT/$img" "$mnt"
  fill "$mnt" "$seed" "$big"
  # fallocate needs extents (ext2/3 and ext4 ^extent have no uninitialized state)
  if [[ $features == *extent* ]]; then fill_mounted "$mnt" "$seed"; fi
  sync; umount "$mnt"
}

# ext4 defaults of e2fsprogs 1.47 (small images would get 1 KiB blocks: -b 4096 says what we test): 4 KiB, 64bit, metadata_csum, huge_file, flex_bg, extents
mk ext4.img 64M 10 1 mkfs.ext4 -b 4096 -L ext4-default -U 0e000000-0000-4000-8000-000000000004 -E root_owner=0:0
# ext4 with 1 KiB blocks: the fragmented file needs an extent tree of depth 2 (84 extents per leaf)
mk ext4-1k.img 32M 11 1 mkfs.ext4 -b 1024 -L ext4-1k -U 0e000000-0000-4000-8000-000000000041
# ext2, 1 KiB blocks, 128-byte inodes, indirect block maps; a file past the double indirect range
mk ext2-1k.img 16M 12 0 mkfs.ext2 -b 1024 -I 128 -L ext2-1k -U 0e000000-0000-4000-8000-000000000002
mount -o loop "$OUT/ext2-1k.img" "$mnt"
python3 - "$mnt/triple" <<'PY'
import sys
# 1 KiB blocks: 12 direct, 256 single, 65536 double (64 MiB + 268 KiB), then triple
with open(sys.argv[1], 'wb') as f:
    for i, off in enumerate((0, 20 << 10, 1 << 20, 70 << 20, (300 << 20) + 12345)):
        f.seek(off); f.write(bytes([65 + i]) * 3000)
PY
sync; umount "$mnt"
# ext3: 2 KiB blocks, journal, htree
mk ext3.img 32M 13 1 mkfs.ext3 -b 2048 -L ext3 -U 0e000000-0000-4000-8000-000000000003
# ext4 without extents (block maps under flex_bg), 32-bit group descriptors
mk ext4-noextent.img 32M 14 0 mkfs.ext4 -b 4096 -O ^extent,^64bit -L noextent
# inline_data: small files and directories live in the inode
mk ext4-inline.img 32M 15 0 mkfs.ext4 -b 4096 -O inline_data -L inline
mount -o loop "$OUT/ext4-inline.img" "$mnt"
mkdir -p "$mnt/inline/dir-small" "$mnt/inline/dir-grown"
echo tiny > "$mnt/inline/tiny"
head -c 100 /dev/zero | tr '\0' 'q' > "$mnt/inline/in-xattr-too"
for i in $(seq 1 3); do : > "$mnt/inline/dir-small/f$i"; done
for i in $(seq 1 40); do : > "$mnt/inline/dir-grown/file-number-$i"; done
sync; umount "$mnt"
# meta_bg without resize_inode; sparse_super2; 2 KiB blocks
mk ext4-metabg.img 48M 16 0 mkfs.ext4 -b 2048 -O meta_bg,^resize_inode -L metabg
mk ext4-sparse2.img 48M 17 0 mkfs.ext4 -b 4096 -O sparse_super2 -g 8192 -L sparse2
# fscrypt: a v2-policy directory (AES-256-XTS / AES-256-CTS) filled while the key was present, then
# unmounted, so the image holds ciphertext names and data; the oracle mounts it without the key.
truncate -s 32M "$OUT/ext4-encrypt.img"
mkfs.ext4 -q -F -b 4096 -O encrypt -L encrypt "$OUT/ext4-encrypt.img" >/dev/null
mount -o loop "$OUT/ext4-encrypt.img" "$mnt"
mkdir "$mnt/enc" "$mnt/plain"; echo plain > "$mnt/plain/file"
python3 - "$mnt" <<'PY'
import fcntl, os, struct, sys
root = sys.argv[1]
key = bytes(range(64))
# FS_IOC_ADD_ENCRYPTION_KEY: struct fscrypt_add_key_arg { key_spec {u32 type=IDENTIFIER(2), u32, u8[32]}, u32 raw_size, u32 key_id, u32[8], raw }
arg = bytearray(struct.pack('<II32sII32s', 2, 0, b'', len(key), 0, b'') + key)
fd = os.open(root, os.O_RDONLY)
fcntl.ioctl(fd, 0xC0506617, arg, True)
ident = bytes(arg[8:24])
# FS_IOC_SET_ENCRYPTION_POLICY with struct fscrypt_policy_v2 {version 2, contents 1 (AES_256_XTS), filenames 4 (AES_256_CTS), flags 0, u8[4], identifier[16]}
pol = struct.pack('<BBBB4s16s', 2, 1, 4, 0, b'', ident)
d = os.open(os.path.join(root, 'enc'), os.O_RDONLY)
fcntl.ioctl(d, 0x800C6613, pol)
e = os.path.join(root, 'enc')
open(os.path.join(e, 'secret.txt'), 'w').write('secret data\n')
open(os.path.join(e, 'n' * 200), 'w').write('long name\n')
os.mkdir(os.path.join(e, 'sub')); open(os.path.join(e, 'sub', 'inner'), 'w').write('inner\n')
os.symlink('secret.txt', os.path.join(e, 'short-link'))
os.symlink('t' * 300, os.path.join(e, 'long-link'))
for i in range(150): open(os.path.join(e, 'sub', f'many-{i:04d}'), 'w').close()
PY
sync; umount "$mnt"

# ea_inode: xattr values too big for a block live in inodes of their own (e_value_inum)
mk ext4-eainode.img 32M 20 0 mkfs.ext4 -b 4096 -O ea_inode -L eainode
mount -o loop "$OUT/ext4-eainode.img" "$mnt"
for n in 2000 8000 30000; do
  echo "$n" > "$mnt/ea-$n"
  setfattr -n user.big -v "0x$(seeded "$n" "$n" | od -An -tx1 -v | tr -d ' \n')" "$mnt/ea-$n"
done
sync; umount "$mnt"

# casefold (flags: CASEFOLD | EXTENTS, mkdir made it an extent dir): this kernel has no CONFIG_UNICODE, so e2fsprogs makes the case-insensitive directory
# (debugfs understands casefold hashing) and debugfs is the oracle.
truncate -s 16M "$OUT/ext4-casefold.img"
mkfs.ext4 -q -F -b 4096 -O casefold -L casefold "$OUT/ext4-casefold.img" >/dev/null
echo casefold > "$OUT/.cf"
debugfs -w -f - "$OUT/ext4-casefold.img" >/dev/null 2>&1 <<DBG
mkdir /cf
set_inode_field /cf flags 0x40080000
write $OUT/.cf /cf/MixedCase.TXT
write $OUT/.cf /cf/lower
write $OUT/.cf /cf/Ünïcödé
mkdir /cf/SubDir
DBG
rm -f "$OUT/.cf"

# mkfs -d: e2fsprogs writes the tree itself (its own allocator and inline symlink rules)
tree=$OUT/.tree; mkdir -p "$tree"; fill "$tree" 18 1
mkfs.ext4 -q -F -b 4096 -L from-d -d "$tree" "$OUT/ext4-d.img" 64M >/dev/null
rm -rf "$tree"
# 64 KiB blocks: what the kernel may not mount on 4 KiB pages; debugfs is its oracle
tree=$OUT/.tree; mkdir -p "$tree"; fill "$tree" 19 0
mkfs.ext4 -q -F -b 65536 -L big-blocks -d "$tree" "$OUT/ext4-64k.img" 64M >/dev/null
rm -rf "$tree"
rmdir "$mnt"
finish
