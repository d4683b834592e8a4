#!/usr/bin/env bash
# Windows "compact" (WOF) files on an NTFS volume. mkntfs makes the volume; ntfs-3g
# (streams_interface=windows, so "file:WofCompressedData" names the stream) writes each file as
# Windows' WOF filter leaves it: an unnamed $DATA stream truncated sparse to the uncompressed size,
# the WofCompressedData stream made by wimlib (an independent XPRESS/LZX compressor, through
# images/gen-wof.py), and the IO_REPARSE_TAG_WOF reparse point set last.
# Per algorithm (xpress4k, xpress8k, xpress16k, lzx), in /<alg>/: empty, 1 byte, exactly one
# chunk, an odd size, 1-3 MiB of text and random data interleaved (some chunks stored raw), zeros,
# incompressible random data, and x86-like code full of E8 bytes (LZX's call translation).
# /bad/: WOF files we must refuse with E_NTFS_WOF (unknown algorithm, WIMBoot provider).
# Output: ntfs-wof.img; orig/<alg>/<name> (the originals: the oracle); manifest.tsv (path, size, sha256).
source "$(dirname "$0")/lib.sh"
begin ntfs-wof "$0" "$IMAGES_DIR/gen-wof.py"
need mkntfs ntfs-3g setfattr python3 openssl
[ -e /dev/fuse ] || { echo "images/ntfs-wof.sh: /dev/fuse is needed for ntfs-3g" >&2; exit 1; }
python3 -c 'import ctypes; ctypes.CDLL("libwim.so.15")' 2>/dev/null || { echo "images/ntfs-wof.sh: libwim.so.15 is missing (apt-get install wimtools)" >&2; exit 127; }
mnt=$(mktemp -d)
trap 'if mountpoint -q "$mnt"; then umount "$mnt"; fi; rmdir "$mnt" 2>/dev/null || true' EXIT

repeat() { head -c "$2" < <(yes "$1"); }

# originals: deterministic content for one algorithm's chunk size CS, seed S
originals() {
  local d=$1 cs=$2 s=$3
  mkdir -p "$d"
  : > "$d/empty.bin"
  printf 'x' > "$d/one-byte.bin"
  repeat "one chunk of compressible text, algorithm chunk $cs" "$cs" > "$d/one-chunk.bin"
  { repeat "odd sized $s" $((cs * 3)); seeded "$s" 777; } > "$d/odd.bin"
  # text and random in 40 KiB runs: every chunk size sees both compressed and raw chunks
  for i in $(seq 0 24); do repeat "line $i of a mixed file, seed $s" 40000; seeded $((s * 100 + i)) 40000; done > "$d/mixed.bin"
  head -c 1048576 /dev/zero > "$d/zeros.bin"
  seeded $((s + 1)) 100001 > "$d/random.bin"
  python3 - "$d/calls.bin" "$s" <<'PY'
import random, struct, sys
# x86-ish: CALL rel32 (E8) among other bytes, targets both near and far, some near the end
r = random.Random(int(sys.argv[2]))
out = bytearray()
while len(out) < 300000:
    k = r.random()
    if k < 0.3:
        out += b'\xe8' + struct.pack('<i', r.randint(-70000, 70000))
    elif k < 0.35:
        out += b'\xe8' + struct.pack('<i', r.randint(-2**31, 2**31 - 1))
    else:
        out += bytes(r.choice(b'\x55\x89\xe5\x8b\x45\x08\x5d\xc3\x90\x00\xff') for _ in range(r.randint(1, 12)))
out = out[:300000 - 7] + b'\xe8\x01\x02\x03\x04\xe8\x05'
open(sys.argv[1], 'wb').write(out)
PY
}

# wof FILE ORIGINAL ALG: writes ORIGINAL as a WOF-compressed FILE on the mounted volume
wof() {
  local f=$1 orig=$2 alg=$3 rp
  rp=$(python3 "$IMAGES_DIR/gen-wof.py" file "$alg" "$orig" "$OUT/.stream")
  : > "$f"
  truncate -s "$(stat -c %s "$orig")" "$f"
  cat "$OUT/.stream" > "$f:WofCompressedData"
  setfattr -n system.ntfs_reparse_data -v 0x"$rp" "$f"
}

img=$OUT/ntfs-wof.img
truncate -s 64M "$img"
mkntfs -q -F -Q -c 4096 -L wof "$img" >/dev/null 2>&1
ntfs-3g -o streams_interface=windows "$img" "$mnt" 9>&- # the daemon must not hold the build lock
seed=40
for alg in xpress4k xpress8k xpress16k lzx; do
  case $alg in xpress4k) cs=4096 ;; xpress8k) cs=8192 ;; xpress16k) cs=16384 ;; lzx) cs=32768 ;; esac
  seed=$((seed + 10))
  originals "$OUT/orig/$alg" "$cs" "$seed"
  mkdir "$mnt/$alg"
  for o in "$OUT/orig/$alg"/*; do wof "$mnt/$alg/$(basename "$o")" "$o" "$alg"; done
done
# refused: algorithm 7 (unknown) and provider 1 (WIMBoot: the data is in a WIM file elsewhere)
mkdir "$mnt/bad"
seeded 99 5000 > "$OUT/.bad"
wof "$mnt/bad/unknown-algorithm.bin" "$OUT/.bad" xpress4k
setfattr -n system.ntfs_reparse_data -v 0x170000801000000001000000020000000100000007000000 "$mnt/bad/unknown-algorithm.bin"
wof "$mnt/bad/wimboot.bin" "$OUT/.bad" xpress4k
setfattr -n system.ntfs_reparse_data -v 0x170000801000000001000000010000000100000000000000 "$mnt/bad/wimboot.bin"
umount "$mnt"
rm -f "$OUT/.stream" "$OUT/.bad"
(cd "$OUT/orig" && find . -type f | sort | while read -r p; do printf '%s\t%s\t%s\n' "${p#.}" "$(stat -c %s "$p")" "$(sha256sum < "$p" | cut -c1-64)"; done) > "$OUT/manifest.tsv"
finish
