#!/usr/bin/env bash
# NTFS test volumes: mkntfs at cluster sizes 512 B, 4 KiB and 64 KiB, populated through a real
# ntfs-3g mount (streams_interface=xattr) with every feature ntfs-3g can write: nested and large
# directories (B+tree depth >= 2), long, non-Latin and case-only-different (POSIX) names, a DOS 8.3
# alias, hard links (enough to overflow into an $ATTRIBUTE_LIST), Interix symlinks, FIFOs and
# devices, reparse-point symlinks and junctions (system.ntfs_reparse_data), ADS, sparse files,
# LZNT1-compressed files, a heavily fragmented file, empty files and a few-MiB file.
# Output: ntfs-512.img, ntfs-4k.img, ntfs-64k.img (each <= 64 MiB, sparse), ntfs-hiber.img.
source "$(dirname "$0")/lib.sh"
begin ntfs "$0"
need mkntfs ntfs-3g setfattr python3 openssl
[ -e /dev/fuse ] || { echo "images/ntfs.sh: /dev/fuse is needed for ntfs-3g" >&2; exit 1; }
mnt=$(mktemp -d)
# never leave a mount behind, whatever fails (lib.sh's ERR trap removes the half-built cache)
trap 'if mountpoint -q "$mnt"; then umount "$mnt"; fi; rmdir "$mnt" 2>/dev/null || true' EXIT

# reparse KIND TARGET [FLAGS]: a REPARSE_POINT buffer as hex (symlink 0xA000000C / mount point 0xA0000003).
reparse() {
  python3 - "$@" <<'PY'
import struct, sys
kind, target = sys.argv[1], sys.argv[2]
flags = int(sys.argv[3]) if len(sys.argv) > 3 else 0
sub = target.encode('utf-16le')
prn = target.replace('\\??\\', '').encode('utf-16le')
if kind == 'junction':   # MOUNT_POINT_REPARSE_DATA: names NUL-terminated, as Windows writes them
    body = struct.pack('<HHHH', 0, len(sub), len(sub) + 2, len(prn)) + sub + b'\0\0' + prn + b'\0\0'
    tag = 0xA0000003
else:                    # SYMLINK_REPARSE_DATA: flags 1 = relative
    body = struct.pack('<HHHHI', 0, len(sub), len(sub), len(prn), flags) + sub + prn
    tag = 0xA000000C
print((struct.pack('<IHH', tag, len(body), 0) + body).hex())
PY
}

# repeat TEXT BYTES: TEXT lines up to BYTES (no `yes | head` pipe: pipefail would see SIGPIPE)
repeat() { head -c "$2" < <(yes "$1"); }

# populate DIR CLUSTER SEED: the tree every volume holds (CLUSTER scales the fragmented file).
populate() {
  local m=$1 cl=$2 s=$3
  mkdir -p "$m/a/b/c/d/e/f" "$m/empty-dir" "$m/links" "$m/many" "$m/names"
  seeded "$s" 70000 > "$m/a/b/c/d/e/f/deep.bin"
  echo "top level" > "$m/readme.txt"
  : > "$m/empty.txt"
  seeded $((s + 1)) 700 > "$m/small-resident.bin"
  seeded $((s + 2)) 3000000 > "$m/big.bin"
  # >= 2,000 entries: the index needs INDX blocks below a root that only holds pointers (depth >= 2).
  for i in $(seq -w 1 2100); do : > "$m/many/entry-$i-with-a-longer-name.txt"; done
  seeded $((s + 3)) 5000 > "$m/many/entry-0042-with-a-longer-name.txt"
  # names: long, non-Latin, astral (surrogate pairs), and differing only in case (POSIX namespace)
  echo long > "$m/names/$(printf 'L%.0s' $(seq 1 250)).txt"
  echo ja > "$m/names/日本語のファイル名.txt"
  echo el > "$m/names/Ελληνικά αρχεία"
  echo emoji > "$m/names/smile-😀-𝄞.txt"
  echo upper > "$m/names/Case.txt"
  echo lower > "$m/names/case.txt"
  echo mixed > "$m/names/CASE.TXT"
  echo ü > "$m/names/Ünïcödé"
  echo dos > "$m/names/A long file name.document"
  setfattr -n system.ntfs_dos_name -v "ALONGF~1.DOC" "$m/names/A long file name.document"
  # hard links, one file with so many that its FILE_NAMEs overflow into extension records
  echo "linked" > "$m/a/hard.txt"
  ln "$m/a/hard.txt" "$m/a/b/hard-link-2.txt"; ln "$m/a/hard.txt" "$m/links/hard-link-3.txt"
  seeded $((s + 4)) 1000 > "$m/a/many-links.bin"
  for i in $(seq 1 40); do ln "$m/a/many-links.bin" "$m/a/b/many-links-with-quite-a-long-name-number-$i.bin"; done
  # Interix symlinks (what ntfs-3g makes for symlink(2)), FIFOs and devices
  ln -s ../readme.txt "$m/links/rel-file"
  ln -s ../a/b "$m/links/rel-dir"
  ln -s /etc/hostname "$m/links/abs"
  ln -s does/not/exist "$m/links/dangling"
  ln -s "../names/日本語のファイル名.txt" "$m/links/non-latin-target"
  mkfifo "$m/links/fifo"
  mknod "$m/links/chr" c 1 3
  mknod "$m/links/blk" b 7 0
  # reparse points as Windows writes them: junctions (same volume, other drive, volume GUID) and
  # NT symlinks (relative, absolute with a drive letter, \??\ full path)
  mkdir "$m/links/junction" "$m/links/junction-other-drive" "$m/links/junction-volume" "$m/links/ntsym-dir"
  setfattr -n system.ntfs_reparse_data -v 0x"$(reparse junction '\??\C:\A\B')" "$m/links/junction"
  setfattr -n system.ntfs_reparse_data -v 0x"$(reparse junction '\??\D:\Elsewhere\dir')" "$m/links/junction-other-drive"
  setfattr -n system.ntfs_reparse_data -v 0x"$(reparse junction '\??\Volume{01234567-89ab-cdef-0123-456789abcdef}\')" "$m/links/junction-volume"
  setfattr -n system.ntfs_reparse_data -v 0x"$(reparse symlink '..\a\B' 1)" "$m/links/ntsym-dir"
  for n in ntsym-rel ntsym-abs ntsym-full ntsym-missing; do : > "$m/links/$n"; done
  setfattr -n system.ntfs_reparse_data -v 0x"$(reparse symlink '..\README.TXT' 1)" "$m/links/ntsym-rel"
  setfattr -n system.ntfs_reparse_data -v 0x"$(reparse symlink '\a\hard.txt' 1)" "$m/links/ntsym-abs"
  setfattr -n system.ntfs_reparse_data -v 0x"$(reparse symlink '\??\C:\readme.txt' 0)" "$m/links/ntsym-full"
  setfattr -n system.ntfs_reparse_data -v 0x"$(reparse symlink '..\nothing\here' 1)" "$m/links/ntsym-missing"
  # a Windows "compact" (WOF, XPRESS4K) stub: the reparse point only; ntfs-3g without its plugin shows a symlink
  : > "$m/links/wof-stub.bin"
  setfattr -n system.ntfs_reparse_data -v 0x170000801000000001000000020000000100000000000000 "$m/links/wof-stub.bin"
  # alternate data streams, resident and not, on a file and on a directory
  echo "main" > "$m/ads.txt"
  setfattr -n user.small -v "a small stream" "$m/ads.txt"
  setfattr -n user.big -v 0x"$(seeded $((s + 5)) 20000 | od -An -v -tx1 | tr -d ' \n')" "$m/ads.txt"
  setfattr -n user.Zone.Identifier -v "[ZoneTransfer]" "$m/ads.txt"
  setfattr -n user.dirstream -v "on a dir" "$m/a"
  # sparse files: a hole at the start, data in the middle, a hole at the end
  truncate -s 8M "$m/sparse.bin"
  seeded $((s + 6)) 100000 | dd of="$m/sparse.bin" bs=4096 seek=500 conv=notrunc status=none
  truncate -s 5M "$m/all-hole.bin"
  # LZNT1: files created in a directory with FILE_ATTRIBUTE_COMPRESSED inherit it
  mkdir "$m/compressed"
  setfattr -n system.ntfs_attrib_be -v 0x00000800 "$m/compressed"
  repeat "compressible text line" 400000 > "$m/compressed/text.txt"
  seeded $((s + 7)) 150000 > "$m/compressed/random.bin"
  { repeat abc 70000; seeded $((s + 8)) 70000; repeat xyz 70000; } > "$m/compressed/mixed.bin"
  echo tiny > "$m/compressed/tiny.txt"
  truncate -s 1M "$m/compressed/sparse-in-compressed.bin"
  seeded $((s + 9)) 9000 | dd of="$m/compressed/sparse-in-compressed.bin" bs=1 seek=300000 conv=notrunc status=none
  # fragmentation: a sparse file filled from its end to its start, one cluster at a time between
  # writes to other files that are deleted afterwards: every cluster its own run, LCN deltas of both
  # signs; 400 runs do not fit one MFT record, so $DATA continues in an extension record.
  local frags=400; [ "$cl" -lt 65536 ] || frags=160
  seeded $((s + 10)) $((cl * frags)) > "$m/.frag-src"
  truncate -s $((cl * frags)) "$m/fragmented.bin"
  for i in $(seq $((frags - 1)) -1 0); do
    dd if="$m/.frag-src" of="$m/fragmented.bin" bs="$cl" skip="$i" seek="$i" count=1 conv=notrunc status=none
    seeded $((s * 1000 + i)) "$cl" > "$m/filler-$i"
  done
  rm -f "$m"/filler-* "$m/.frag-src"
}

build() { # build NAME SIZE CLUSTER SEED
  local img=$OUT/$1
  truncate -s "$2" "$img"
  mkntfs -q -F -Q -c "$3" -L "vol-$3" "$img" >/dev/null 2>&1
  ntfs-3g -o streams_interface=xattr "$img" "$mnt" 9>&- # the daemon must not hold the build lock
  populate "$mnt" "$3" "$4"
  umount "$mnt"
}

build ntfs-512.img 40M 512 11
build ntfs-4k.img 48M 4096 21
build ntfs-64k.img 64M 65536 31

# A volume Windows left hibernated: hiberfil.sys in the root starting with "hibr" (ntfs-3g refuses
# to mount it read-write; we read it and say so).
truncate -s 8M "$OUT/ntfs-hiber.img"
mkntfs -q -F -Q -c 4096 -L hibernated "$OUT/ntfs-hiber.img" >/dev/null 2>&1
ntfs-3g -o streams_interface=xattr "$OUT/ntfs-hiber.img" "$mnt" 9>&-
{ printf 'hibr'; head -c 65532 /dev/zero; } > "$mnt/hiberfil.sys"
echo "still here" > "$mnt/document.txt"
umount "$mnt"
finish
