#!/usr/bin/env bash
# An seSparse chain 3 deep: a monolithicFlat base made by qemu-img with seeded content, and two
# seSparse deltas written by images/gen-sesparse.ts (4 KiB grains, 16 MiB per grain table) with data
# grains over the parent's data and over unallocated space, zero and unmapped grains (which hide the
# parent), grain tables left unallocated, an allocated but empty grain table, grain indexes past 4096
# (both halves of the shuffled GTE index bits), and the last (partial) grain. qemu reads the chain.
source "$(dirname "$0")/lib.sh"
begin vmdk-sesparse "$IMAGES_DIR/gen-lib.ts" "$IMAGES_DIR/gen-sesparse.ts" "$IMAGES_DIR/../src/disk/vmdk/structs-sesparse.ts"
need qemu-img openssl node
TSX="$IMAGES_DIR/../node_modules/.bin/tsx"
[ -x "$TSX" ] || { echo "images: $TSX is missing (npm install)" >&2; exit 127; }

SECTORS=163843   # 80 MiB + 3 sectors: 6 grain tables, the last one mapping a single partial grain
cd "$OUT"
qemu-img create -q -f vmdk -o subformat=monolithicFlat base.vmdk $((SECTORS * 512))
seeded 4201 $((72 * 1024 * 1024)) | dd of=base-flat.vmdk conv=notrunc status=none

# snap1: grain tables for 0..16 MiB, 16..32, 32..48 (9000:1000 crosses into it) and 80 MiB; 48..80 MiB unallocated
# except an empty table at 64 MiB.
"$TSX" "$IMAGES_DIR/gen-sesparse.ts" --dir "$OUT" --name snap1 --parent base.vmdk --sectors $SECTORS --seed 21 \
  --runs 0:16,300:50,4094:4,9000:1000,14000:300,20480:1 --zero 100:10,5000:20 --unmapped 200:5 --empty-gt 4
# snap2: data over snap1's data, zeros and unmapped grains; zeros over snap1's data and the base's.
"$TSX" "$IMAGES_DIR/gen-sesparse.ts" --dir "$OUT" --name snap2 --parent snap1.vmdk --sectors $SECTORS --seed 22 \
  --runs 2:4,105:10,310:20,5010:5,12000:100,17000:64 --zero 9100:50,14100:40 --unmapped 16000:30,20480:1 \
  --first-grain-index 5000

depth=$(qemu-img info --backing-chain snap2.vmdk | grep -c '^image:')
[ "$depth" -ge 3 ] || { echo "images: qemu sees a chain of $depth, expected 3" >&2; exit 1; }
finish
