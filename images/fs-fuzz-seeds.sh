#!/usr/bin/env bash
# Small real filesystem images for the filesystem fuzzer (test/fuzz/fs-fuzz.ts, bench/fuzz-fs.ts):
# a fuzz case copies nothing, so the seeds are kept to a few MiB and the walk of one stays cheap.
#   ext4.img       4 MiB, 1 KiB blocks, 1024 blocks per group (4 groups), metadata_csum: an htree
#                  directory (e2fsck -D), fast and slow symlinks, in-inode and block xattrs, a sparse
#                  file with enough extents for an extent tree block, a file with a deep path.
#   ext4-jnl.img   the same tree with two committed transactions (debugfs jo/jw/jc, journal csum v3)
#                  never written home, and an uncommitted third: every open replays the journal.
#   ext3-jnl.img   mkfs.ext3 (block maps with indirect blocks, no csum): the same tree and journal.
#   ntfs-4k.img    8 MiB, 4 KiB clusters; ntfs-512.img  6 MiB, 512 B clusters. Populated through
#                  ntfs-3g: a 220-entry directory (INDX blocks), LZNT1-compressed files, a sparse file,
#                  ADS, hard links, Interix and reparse-point symlinks, a fragmented file.
# Each IMG has IMG.regions.json beside it: the byte ranges of its metadata, found with independent
# tools (dumpe2fs/debugfs for ext, the boot sector and sleuthkit's istat for NTFS), never with the
# reader under test. seeds.json lists the seeds: [{ name, fs, image, regions }].
source "$(dirname "$0")/lib.sh"
begin fs-fuzz-seeds
need mkfs.ext4 mkfs.ext3 debugfs dumpe2fs e2fsck mkntfs ntfs-3g setfattr istat node openssl python3
[ -e /dev/fuse ] || { echo "images/fs-fuzz-seeds.sh: /dev/fuse is needed for ntfs-3g" >&2; exit 1; }
export E2FSPROGS_FAKE_TIME=1700000000
work=$OUT/work; mkdir -p "$work"
mnt=$(mktemp -d)
trap 'if mountpoint -q "$mnt"; then umount "$mnt"; fi; rmdir "$mnt" 2>/dev/null || true' EXIT

# ---------------------------------------------------------------- ext
tree=$work/tree
mkdir -p "$tree/htree" "$tree/links" "$tree/xattr" "$tree/data" "$tree/a/b/c/d"
for i in $(seq -w 1 150); do echo "$i" > "$tree/htree/entry-number-$i-with-a-long-name"; done
echo deep > "$tree/a/b/c/d/deep.txt"
seeded 41 20000 > "$tree/data/small.bin"
# a sparse file of 12 one-block islands: 12 extents do not fit the inode's 4, an extent block holds them
truncate -s 200K "$tree/data/islands.bin"
for i in $(seq 0 11); do seeded $((50 + i)) 1024 | dd of="$tree/data/islands.bin" bs=1024 seek=$((i * 16 + 1)) conv=notrunc status=none; done
ln -s ../data/small.bin "$tree/links/fast"
ln -s "$(printf 'long/%.0s' $(seq 1 30))target" "$tree/links/slow"
ln -s /does/not/exist "$tree/links/dangling"
ln "$tree/data/small.bin" "$tree/links/hard"
echo small > "$tree/xattr/small"; echo big > "$tree/xattr/big"
seeded 61 200 > "$work/new1.bin"; seeded 62 5000 > "$work/new2.bin"

# mkext NAME MKFS...: the tree, an htree index, xattrs (in the inode and in a block).
mkext() {
  local img=$OUT/$1; shift
  "$@" -q -F -b 1024 -g 1024 -N 512 -I 256 -U 0b9b1c1e-0000-4000-8000-0000000000f1 -E root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0 -d "$tree" "$img" 4M >/dev/null
  debugfs -w -f - "$img" >/dev/null 2>&1 <<DBG
ea_set /xattr/small user.a short
ea_set /xattr/big user.big $(seeded 63 600 | od -An -v -tx1 | tr -d ' \n')
ea_set /xattr/big user.second $(printf 'v%.0s' $(seq 1 200))
ea_set /htree trusted.dir dirvalue
DBG
  e2fsck -fyD "$img" >/dev/null 2>&1 || [ $? -le 1 ]
}
# blockdiff A B: comma-separated 1 KiB block numbers where A and B differ.
blockdiff() {
  node -e '
    const fs = require("fs"); const a = fs.readFileSync(process.argv[1]), b = fs.readFileSync(process.argv[2]), out = [];
    for (let i = 0; i * 1024 < a.length; i++) if (!a.subarray(i * 1024, i * 1024 + 1024).equals(b.subarray(i * 1024, i * 1024 + 1024))) out.push(i);
    process.stdout.write(out.join(","));' "$1" "$2"
}
blocksof() { local b; : > "$3"; for b in ${2//,/ }; do dd if="$1" bs=1024 skip="$b" count=1 status=none >> "$3"; done; }
transaction() {
  local img=$1 jo=$2; shift 2
  printf 'jo %s\njw %s\njc\n' "$jo" "$*" | debugfs -w -f - "$img" >/dev/null 2>"$work/dbg.err"
  if grep -qiE 'error|invalid|not open|usage' "$work/dbg.err"; then cat "$work/dbg.err" >&2; exit 1; fi
}
# journal NAME JO_ARGS: two committed transactions (a later state made by debugfs -w) and an uncommitted one.
journal() {
  local img=$OUT/$1 jo=$2 m1=$work/m1.img m2=$work/m2.img
  cp "$img" "$m1"
  debugfs -w -f - "$m1" >/dev/null 2>&1 <<DBG
write $work/new1.bin /data/new1.bin
mkdir /data/newdir
symlink /links/new-link /data/new1.bin
rm /htree/entry-number-007-with-a-long-name
DBG
  cp "$m1" "$m2"
  debugfs -w -f - "$m2" >/dev/null 2>&1 <<DBG
write $work/new2.bin /data/newdir/new2.bin
rm /data/small.bin
set_inode_field /xattr/small mode 0100600
DBG
  local t1 t2; t1=$(blockdiff "$img" "$m1"); t2=$(blockdiff "$m1" "$m2")
  blocksof "$m1" "$t1" "$work/t1.bin"; blocksof "$m2" "$t2" "$work/t2.bin"
  transaction "$img" "$jo" -b "$t1" "$work/t1.bin"
  transaction "$img" "$jo" -b "$t2" "$work/t2.bin"
  transaction "$img" "$jo" -c -b "${t2%%,*}" "$work/t1.bin"
  rm -f "$m1" "$m2"
}
mkext ext4.img mkfs.ext4 -O metadata_csum,^resize_inode
cp "$OUT/ext4.img" "$OUT/ext4-jnl.img"; journal ext4-jnl.img "-c -v 3"
mkext ext3-jnl.img mkfs.ext3
journal ext3-jnl.img ""

# extregions IMG: metadata byte ranges from dumpe2fs (superblocks, descriptors, bitmaps, inode
# tables) and debugfs (directory, htree, extent, xattr and journal blocks).
extregions() {
  local img=$1 bs=1024 out=() b
  add() { out+=("[\"$1\",$(($2 * bs)),$(($3 * bs))]"); }
  add superblock 1 1
  while read -r kind a z; do add "$kind" "$a" $((z - a + 1)); done < <(dumpe2fs "$img" 2>/dev/null | perl -ne '
    print "superblock $1 $1\n" if /superblock at (\d+)/ && $1 > 1;
    print "group-desc $1 $2\n" if /Group descriptors at (\d+)-(\d+)/;
    print "bitmap $1 $1\n" if /Block bitmap at (\d+)/;
    print "bitmap $1 $1\n" if /Inode bitmap at (\d+)/;
    print "inode-table $1 $2\n" if /Inode table at (\d+)-(\d+)/;')
  for d in / /htree /links /xattr /data /data/islands.bin /a/b/c/d /links/slow; do
    for b in $(debugfs -R "blocks $d" "$img" 2>/dev/null | tr ' ' '\n' | head -n 40); do add "blocks:$d" "$b" 1; done
    for b in $(debugfs -R "stat $d" "$img" 2>/dev/null | grep -oE '\((ETB|IND|DIND|TIND)[0-9]*\):[0-9]+' | cut -d: -f2); do add "tree:$d" "$b" 1; done
  done
  for f in /xattr/big /htree; do
    b=$(debugfs -R "stat $f" "$img" 2>/dev/null | sed -n 's/.*File ACL: \([0-9]*\).*/\1/p'); [ "${b:-0}" -gt 0 ] && add "xattr-block:$f" "$b" 1
  done
  # the journal's superblock and its first log blocks (descriptors, data, commits, revokes)
  for b in $(debugfs -R "bmap <8> 0" "$img" 2>/dev/null); do add journal "$b" 40; done
  ( IFS=,; echo "[${out[*]}]" ) > "$img.regions.json"
}
for i in ext4 ext4-jnl ext3-jnl; do extregions "$OUT/$i.img"; done

# ---------------------------------------------------------------- ntfs
reparse_symlink() { # TARGET FLAGS: SYMLINK_REPARSE_DATA as hex
  python3 - "$@" <<'PY'
import struct, sys
t, flags = sys.argv[1], int(sys.argv[2])
sub = t.encode('utf-16le')
body = struct.pack('<HHHHI', 0, len(sub), len(sub), len(sub), flags) + sub + sub
print((struct.pack('<IHH', 0xA000000C, len(body), 0) + body).hex())
PY
}
populate() { # DIR CLUSTER SEED
  local m=$1 cl=$2 s=$3
  mkdir -p "$m/many" "$m/a/b" "$m/links" "$m/compressed"
  for i in $(seq -w 1 220); do : > "$m/many/entry-$i-with-a-longer-name.txt"; done
  seeded "$s" 3000 > "$m/many/entry-042-with-a-longer-name.txt"
  echo readme > "$m/readme.txt"
  seeded $((s + 1)) 600 > "$m/a/resident.bin"
  seeded $((s + 2)) 30000 > "$m/a/b/nonresident.bin"
  echo linked > "$m/a/hard.txt"; ln "$m/a/hard.txt" "$m/a/b/hard-2.txt"; ln "$m/a/hard.txt" "$m/links/hard-3.txt"
  ln -s ../readme.txt "$m/links/interix"
  : > "$m/links/ntsym"; setfattr -n system.ntfs_reparse_data -v 0x"$(reparse_symlink '..\readme.txt' 1)" "$m/links/ntsym"
  echo main > "$m/ads.txt"
  setfattr -n user.small -v "a small stream" "$m/ads.txt"
  setfattr -n user.big -v 0x"$(seeded $((s + 3)) 9000 | od -An -v -tx1 | tr -d ' \n')" "$m/ads.txt"
  truncate -s 1M "$m/sparse.bin"
  seeded $((s + 4)) 20000 | dd of="$m/sparse.bin" bs=4096 seek=100 conv=notrunc status=none
  setfattr -n system.ntfs_attrib_be -v 0x00000800 "$m/compressed"
  head -c 150000 < <(yes "compressible text line") > "$m/compressed/text.txt"
  { head -c 40000 < <(yes abc); seeded $((s + 5)) 20000; } > "$m/compressed/mixed.bin"
  # fragmented: filled from its end one cluster at a time between writes of fillers deleted after
  local frags=48
  seeded $((s + 6)) $((cl * frags)) > "$work/frag-src"
  truncate -s $((cl * frags)) "$m/fragmented.bin"
  for i in $(seq $((frags - 1)) -1 0); do
    dd if="$work/frag-src" of="$m/fragmented.bin" bs="$cl" skip="$i" seek="$i" count=1 conv=notrunc status=none
    seeded $((s * 1000 + i)) "$cl" > "$m/filler-$i"
  done
  rm -f "$m"/filler-*
}
mkntfsimg() { # NAME SIZE CLUSTER SEED
  local img=$OUT/$1
  truncate -s "$2" "$img"
  mkntfs -q -F -Q -c "$3" -L fuzz "$img" >/dev/null 2>&1
  ntfs-3g -o streams_interface=xattr "$img" "$mnt" 9>&-
  populate "$mnt" "$3" "$4"
  umount "$mnt"
}
mkntfsimg ntfs-4k.img 8M 4096 81
mkntfsimg ntfs-512.img 6M 512 91

# ntfsregions IMG: the boot sector, every MFT record in use, $MFTMirr, $UpCase, the INDX blocks of
# every directory and the clusters of $ATTRIBUTE_LISTs, from the boot sector and sleuthkit's istat.
ntfsregions() {
  local img=$1
  python3 - "$img" <<'PY'
import json, re, struct, subprocess, sys
img = sys.argv[1]
boot = open(img, 'rb').read(512)
bps, spc = struct.unpack_from('<HB', boot, 0x0B)
cs = bps * spc
mft_lcn, mirr_lcn = struct.unpack_from('<qq', boot, 0x30)
raw = struct.unpack_from('<b', boot, 0x40)[0]
rec = raw * cs if raw > 0 else 1 << -raw
regions = [['boot', 0, 512]]
def istat(ino):
    return subprocess.run(['istat', '-f', 'ntfs', img, str(ino)], capture_output=True, text=True).stdout
def runs(text, attr):
    # the cluster list that istat prints under the attribute's "Type:" line
    out, on = [], False
    for line in text.splitlines():
        if line.startswith('Type:'):
            on = attr in line and 'Non-Resident' in line
        elif on:
            out += [int(x) for x in line.split() if x.isdigit()]
    return out
# MFT records in use: $MFT's own $DATA runs, record by record; the files in use from sleuthkit's fls
mft = runs(istat(0), '$DATA')
inodes = sorted({int(m) for m in re.findall(r'^\S+ \S*?\s*(\d+)-\d+-\d+', subprocess.run(['fls', '-f', 'ntfs', '-r', '-p', img], capture_output=True, text=True).stdout, re.M)} | set(range(16)))
per = cs // rec if cs >= rec else 0
for ino in inodes:
    if per:
        lcn = mft[ino // per] if ino // per < len(mft) else None
        if lcn is None: continue
        off = lcn * cs + (ino % per) * rec
    else:
        k = rec // cs
        if ino * k >= len(mft): continue
        off = mft[ino * k] * cs
    regions.append(['mft-record:%d' % ino, off, rec])
    text = istat(ino)
    for attr, what in (('$INDEX_ALLOCATION', 'indx'), ('$ATTRIBUTE_LIST', 'attrlist')):
        for c in runs(text, attr)[:16]:
            regions.append(['%s:%d' % (what, ino), c * cs, cs])
regions.append(['mftmirr', mirr_lcn * cs, 4 * rec])
for c in runs(istat(10), '$DATA')[:32:4]:
    regions.append(['upcase', c * cs, min(cs * 4, 4096)])
json.dump(regions, open(img + '.regions.json', 'w'))
PY
}
for i in ntfs-4k ntfs-512; do ntfsregions "$OUT/$i.img"; done

node -e '
const fs = require("fs");
const seeds = ["ext4", "ext4-jnl", "ext3-jnl", "ntfs-4k", "ntfs-512"].map((n) => ({ name: n, fs: n.startsWith("ntfs") ? "ntfs" : "ext", image: n + ".img", regions: n + ".img.regions.json" }));
fs.writeFileSync("'"$OUT"'/seeds.json", JSON.stringify(seeds, null, 1));'
rm -rf "$work"
finish
