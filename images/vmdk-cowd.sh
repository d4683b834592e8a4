#!/usr/bin/env bash
# A vmfsSparse (COWD) chain 3 deep: a monolithicFlat base made by qemu-img with seeded content, and
# two COWD redo logs written by images/gen-cowd.ts from the spec, with different grain sizes, grains
# that overlap the parent's data, grains in unallocated space, runs crossing grain-table boundaries,
# an allocated but empty grain table, and the last (partial) grain. qemu reads the chain: the oracle.
source "$(dirname "$0")/lib.sh"
begin vmdk-cowd "$IMAGES_DIR/gen-lib.ts" "$IMAGES_DIR/gen-cowd.ts" "$IMAGES_DIR/../src/disk/vmdk/structs-cowd.ts"
need qemu-img openssl node
TSX="$IMAGES_DIR/../node_modules/.bin/tsx"
[ -x "$TSX" ] || { echo "images: $TSX is missing (npm install)" >&2; exit 127; }

SECTORS=131079   # 64 MiB + 7 sectors: the last grain of a 16-sector grain size is partial
cd "$OUT"
qemu-img create -q -f vmdk -o subformat=monolithicFlat base.vmdk $((SECTORS * 512))
# Seeded data in the first 48 MiB; the rest of the base stays zero.
seeded 4101 $((48 * 1024 * 1024)) | dd of=base-flat.vmdk conv=notrunc status=none

# snap1: 512-byte grains (2 MiB per grain table), 65 grain-directory entries.
"$TSX" "$IMAGES_DIR/gen-cowd.ts" --dir "$OUT" --name snap1 --parent base.vmdk --sectors $SECTORS --grain 1 --seed 11 \
  --runs 0:64,1000:8,4090:12,20000:2048,65536:100,110000:300,131000:79 --empty-gt 40
# snap2: 8 KiB grains (32 MiB per grain table), over snap1's and the base's data and past it.
"$TSX" "$IMAGES_DIR/gen-cowd.ts" --dir "$OUT" --name snap2 --parent snap1.vmdk --sectors $SECTORS --grain 16 --seed 12 \
  --runs 1:2,100:300,1240:10,4090:10,6000:1,6870:20,8192:1

depth=$(qemu-img info --backing-chain snap2.vmdk | grep -c '^image:')
[ "$depth" -ge 3 ] || { echo "images: qemu sees a chain of $depth, expected 3" >&2; exit 1; }
finish
