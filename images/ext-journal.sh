#!/usr/bin/env bash
# ext3/ext4 images whose jbd2 journal holds committed transactions that were never written home,
# for src/fs/ext/journal (replay into memory). Built with real tools only:
#   - debugfs's journal_open/journal_write/journal_close (jo/jw/jc, as e2fsprogs' own j_* tests do)
#     write transactions whose blocks are the difference between the image and a later state of the
#     same filesystem (made by debugfs -w on a copy): replaying them yields that later state.
#       ext4-v3.img      4 KiB blocks, 64bit, metadata_csum; journal csum v3, 64-bit tags.
#                        T1 mod1, T2 mod2 (one block starts with the jbd2 magic: an escaped tag),
#                        T3 revokes block $(cat ext4-v3.revoked), T4 rewrites it, T5 uncommitted.
#       ext4-v2-1k.img   1 KiB blocks, ^64bit, metadata_csum; journal csum v2 (10-byte tags). T1, T2.
#       ext3.img         mkfs.ext3 (no csum, 32-bit tags). T1, T2, T3 revoke, T4 uncommitted.
#       ext4-64.img      4 KiB, 64bit, ^metadata_csum; no journal csum, 12-byte tags. T1, T2.
#   - the kernel: kernel-wrap.img is a loop-mounted ext4 (1 KiB blocks, 1024-block journal, csum v3)
#     shut down without a log flush after enough creates/deletes (revokes) that the live log wraps
#     past the journal's end: a crash image as the guest's kernel leaves it.
# Every NAME.img has NAME.final.img beside it where debugfs made it: the state replay must reach.
source "$(dirname "$0")/lib.sh"
begin ext-journal "$0"
need mkfs.ext3 mkfs.ext4 debugfs e2fsck dumpe2fs mount umount mountpoint perl node openssl
work=$OUT/work; mkdir -p "$work"
export E2FSPROGS_FAKE_TIME=1700000000

# blockdiff A B BS: comma-separated numbers of the BS-sized blocks where A and B differ.
blockdiff() {
  node -e '
    const fs = require("fs"); const [a, b, bs] = [fs.openSync(process.argv[1]), fs.openSync(process.argv[2]), +process.argv[3]];
    const n = fs.fstatSync(a).size / bs, x = Buffer.alloc(bs), y = Buffer.alloc(bs), out = [];
    for (let i = 0; i < n; i++) { fs.readSync(a, x, 0, bs, i * bs); fs.readSync(b, y, 0, bs, i * bs); if (!x.equals(y)) out.push(i); }
    process.stdout.write(out.join(","));' "$1" "$2" "$3"
}
# blocksof IMG BS LIST OUT: the listed blocks of IMG, concatenated (what jw -b LIST OUT writes).
blocksof() {
  local b; : > "$4"
  for b in ${3//,/ }; do dd if="$1" bs="$2" skip="$b" count=1 status=none >> "$4"; done
}
# transaction IMG JO_ARGS JW_ARGS...: one debugfs journal_open / journal_write / journal_close.
transaction() {
  local img=$1 jo=$2; shift 2
  printf 'jo %s\njw %s\njc\n' "$jo" "$*" | debugfs -w -f - "$img" >/dev/null 2>"$work/dbg.err"
  if grep -qiE 'error|invalid|not open|usage' "$work/dbg.err"; then cat "$work/dbg.err" >&2; exit 1; fi
}
# file_block IMG PATH: the first physical block of PATH.
file_block() { debugfs -R "bmap $2 0" "$1" 2>/dev/null; }

seeded_tree() {
  local d=$1
  mkdir -p "$d/etc" "$d/home/bob/src" "$d/var/log"
  echo "journal-test" > "$d/etc/hostname"
  seeded 11 70000 > "$d/home/bob/big.bin"
  for i in $(seq 1 20); do seeded $((1100 + i)) $((i * 613)) > "$d/home/bob/src/file-$i.c"; done
  seeded 12 3000 > "$d/var/log/syslog"
}
seeded_tree "$work/tree"
seeded 21 90000 > "$work/new1.bin"; seeded 22 5000 > "$work/new2.txt"
# A file whose first block begins with the jbd2 magic (0xC03B3998, big-endian): the journal must
# escape that block (JBD2_FLAG_ESCAPE) and replay must restore the magic.
{ printf '\xc0\x3b\x39\x98'; seeded 23 20000; } > "$work/magic.bin"
seeded 24 40000 > "$work/new3.bin"

# mods BASE MOD1 MOD2: two later states of BASE, as a running guest would leave them.
mods() {
  cp "$1" "$2"
  debugfs -w -f - "$2" >/dev/null 2>&1 <<DBG
write $work/new1.bin /home/bob/new1.bin
mkdir /home/bob/newdir
write $work/new2.txt /home/bob/newdir/new2.txt
symlink /home/bob/link-to-new1 /home/bob/new1.bin
rm /home/bob/src/file-3.c
set_inode_field /etc/hostname mode 0100600
DBG
  cp "$2" "$3"
  debugfs -w -f - "$3" >/dev/null 2>&1 <<DBG
write $work/magic.bin /home/bob/newdir/magic.bin
write $work/new3.bin /var/log/new3.bin
rm /var/log/syslog
rm /home/bob/src/file-7.c
mkdir /home/bob/newdir/sub
DBG
}

# scenario NAME BS JO_ARGS REVOKE(yes/no) MKFS...: the debugfs-made images described above.
nscenario=0
scenario() {
  local name=$1 bs=$2 jo=$3 revoke=$4; shift 4
  nscenario=$((nscenario + 1))
  local base=$OUT/$name.img m1=$work/$name.m1.img m2=$work/$name.m2.img
  "$@" -q -F -b "$bs" -U 0b9b1c1e-0000-4000-8000-00000000000$nscenario -E root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0 -d "$work/tree" "$base" 48M >/dev/null
  mods "$base" "$m1" "$m2"
  local t1 t2; t1=$(blockdiff "$base" "$m1" "$bs"); t2=$(blockdiff "$m1" "$m2" "$bs")
  blocksof "$m1" "$bs" "$t1" "$work/t1.bin"; blocksof "$m2" "$bs" "$t2" "$work/t2.bin"
  transaction "$base" "$jo" -b "$t1" "$work/t1.bin"
  transaction "$base" "$jo" -b "$t2" "$work/t2.bin"
  cp "$m2" "$OUT/$name.final.img"
  if [ "$revoke" = yes ]; then
    # Revoke the first data block of new1.bin (written by T1 only): not replayed from T1/T2.
    local victim; victim=$(file_block "$m2" /home/bob/new1.bin)
    transaction "$base" "$jo" -r "$victim"
    echo "$victim" > "$OUT/$name.revoked"
    # T4 writes the revoked block again (after the revoke: replayed); T5 never commits.
    seeded 31 "$bs" > "$work/t4.bin"
    transaction "$base" "$jo" -b "$victim" "$work/t4.bin"
    seeded 32 "$bs" > "$work/t5.bin"
    transaction "$base" "$jo" -c -b "$(file_block "$m2" /var/log/new3.bin)" "$work/t5.bin"
    rm -f "$OUT/$name.final.img" # the final state is no longer a debugfs-made image
  fi
  rm -f "$m1" "$m2"
}
scenario ext4-v3 4096 "-c -v 3" yes mkfs.ext4 -O 64bit,metadata_csum
scenario ext4-v2-1k 1024 "-c -v 2" no mkfs.ext4 -O ^64bit,metadata_csum
scenario ext3 1024 "" yes mkfs.ext3
scenario ext4-64 4096 "" no mkfs.ext4 -O 64bit,^metadata_csum

# ---- kernel-wrap: the kernel's own journal, caught mid-life. After the last round the filesystem
# is shut down without flushing its log (EXT4_IOC_SHUTDOWN, EXT4_GOING_FLAGS_NOLOGFLUSH, as xfstests'
# godown does): no further write reaches the image, which is then exactly what a crash leaves.
kimg=$work/kernel.img
mnt=$work/mnt; mkdir -p "$mnt"
cleanup() { mountpoint -q "$mnt" && umount "$mnt" 2>/dev/null || true; }
trap 'cleanup; rm -rf "$OUT"' ERR
trap cleanup EXIT
# journal_wrapped IMG: true when the live log (from logdump) runs past the journal's end and on
# from its start: the last block found lies below the block the log starts at.
journal_wrapped() {
  debugfs -R logdump "$1" 2>/dev/null | awk '
    /Journal starts at block/ { start = $5 + 0 }
    /Found expected sequence/ { last = $NF + 0 }
    END { exit !(start > 0 && last > 0 && last < start) }'
}
EXT4_IOC_SHUTDOWN=$(( 0x8004587D )); EXT4_GOING_FLAGS_NOLOGFLUSH=2
ok=0
for attempt in 1 2 3; do
  rm -f "$kimg"; truncate -s 48M "$kimg"
  mkfs.ext4 -q -F -b 1024 -J size=1 -E lazy_itable_init=0,lazy_journal_init=0 "$kimg"
  mount -o loop,noatime,commit=600 "$kimg" "$mnt"
  for round in $(seq 1 60); do
    d=$mnt/r$round; mkdir -p "$d"
    for i in $(seq 1 40); do seeded $((round * 1000 + i)) $(( (i % 7) * 700 + 10 )) > "$d/f$i"; done
    [ $round -gt 2 ] && rm -rf "$mnt/r$((round - 2))"
    sync
    if [ $round -ge 4 ] && journal_wrapped "$kimg"; then break; fi
  done
  perl -e 'open(my $fh, "<", $ARGV[0]) or die "$ARGV[0]: $!"; ioctl($fh, $ARGV[1], pack("L", $ARGV[2])) or die "EXT4_IOC_SHUTDOWN: $!"' "$mnt" "$EXT4_IOC_SHUTDOWN" "$EXT4_GOING_FLAGS_NOLOGFLUSH"
  umount "$mnt"
  if journal_wrapped "$kimg"; then ok=1; break; fi
done
[ $ok = 1 ] || { echo "ext-journal: the kernel's log never wrapped" >&2; exit 1; }
cp --sparse=always "$kimg" "$OUT/kernel-wrap.img"
cleanup
trap - EXIT
rm -rf "$work"
finish
