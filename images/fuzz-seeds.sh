#!/usr/bin/env bash
# Small real images for the disk fuzzer (test/fuzz/disk-fuzz.ts): every kind of VMDK, a chain, split
# and flat descriptors, GPT and MBR tables; seeds.json lists each seed's files and its top.
source "$(dirname "$0")/lib.sh"
begin fuzz-seeds "$IMAGES_DIR/gen-lib.ts" "$IMAGES_DIR/gen-cowd.ts" "$IMAGES_DIR/gen-sesparse.ts"
need qemu-img qemu-io sfdisk
cd "$OUT"
data() { seeded "$1" "$2" > "$3"; }

mk() { mkdir -p "$1"; }
# monolithicSparse, with scattered grains and a zeroed grain
mk sparse; qemu-img create -q -f vmdk -o zeroed_grain=on sparse/d.vmdk 4M
qio sparse/d.vmdk vmdk "write -P 0x11 0 70k" "write -P 0x22 1M 4k" "write -z 2M 64k" "write -P 0x33 4092k 4k"
# streamOptimized
mk stream; data 11 1M stream/in.raw; truncate -s 3M stream/in.raw
qemu-img convert -q -f raw -O vmdk -o subformat=streamOptimized stream/in.raw stream/d.vmdk; rm stream/in.raw
# a 3-deep monolithicSparse chain
mk chain; qemu-img create -q -f vmdk chain/base.vmdk 4M; qio chain/base.vmdk vmdk "write -P 0x41 0 1M"
qemu-img create -q -f vmdk -b base.vmdk -F vmdk chain/mid.vmdk; qio chain/mid.vmdk vmdk "write -P 0x42 512k 1M"
qemu-img create -q -f vmdk -b mid.vmdk -F vmdk chain/top.vmdk; qio chain/top.vmdk vmdk "write -P 0x43 1000k 100k"
# monolithicFlat and twoGbMaxExtentSparse (descriptor + extents)
mk flat; qemu-img create -q -f vmdk -o subformat=monolithicFlat flat/d.vmdk 1M; qio flat/d.vmdk vmdk "write -P 0x51 4k 8k"
mk split; qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse split/d.vmdk 2M; qio split/d.vmdk vmdk "write -P 0x61 0 128k"
# GPT and MBR (with an extended partition and logicals) on raw disks
mk gpt; truncate -s 2M gpt/d.raw
printf 'label: gpt\nstart=34, size=1000\nstart=1034, size=1000, name="two"\nstart=2048, size=1000\n' | sfdisk -q gpt/d.raw
mk mbr; truncate -s 2M mbr/d.raw
printf 'label: dos\nstart=1, size=500, type=83\nstart=600, size=3000, type=5\nstart=602, size=500, type=7\nstart=1200, size=500, type=83\nstart=1800, size=800, type=b\n' | sfdisk -q mbr/d.raw
# COWD (vmfsSparse) and seSparse deltas over a flat base, written from the spec by our generators
TSX="$IMAGES_DIR/../node_modules/.bin/tsx"
for kind in cowd sesparse; do
  mk $kind; qemu-img create -q -f vmdk -o subformat=monolithicFlat $kind/base.vmdk 2M
  seeded 71 1M | dd of=$kind/base-flat.vmdk conv=notrunc status=none
done
"$TSX" "$IMAGES_DIR/gen-cowd.ts" --dir cowd --name snap1 --parent base.vmdk --sectors 4096 --grain 1 --seed 72 --runs 0:8,100:30,4000:96
"$TSX" "$IMAGES_DIR/gen-cowd.ts" --dir cowd --name d --parent snap1.vmdk --sectors 4096 --grain 16 --seed 73 --runs 1:2,100:40
"$TSX" "$IMAGES_DIR/gen-sesparse.ts" --dir sesparse --name snap1 --parent base.vmdk --sectors 4096 --seed 74 --runs 0:8,100:30,400:96
"$TSX" "$IMAGES_DIR/gen-sesparse.ts" --dir sesparse --name d --parent snap1.vmdk --sectors 4096 --seed 75 --runs 1:2,300:40,500:12

# seeds.json: every file of each seed; text files are descriptors
node -e '
const fs = require("fs"), path = require("path");
const seeds = [];
for (const name of fs.readdirSync(".").filter((d) => fs.statSync(d).isDirectory()).sort()) {
  const files = fs.readdirSync(name).sort().map((f) => {
    const head = fs.readFileSync(path.join(name, f)).subarray(0, 64).toString("latin1");
    return { path: f, text: head.startsWith("# Disk DescriptorFile") };
  });
  const top = { chain: "top.vmdk", gpt: "d.raw", mbr: "d.raw" }[name] ?? "d.vmdk";
  seeds.push({ name, top, files });
}
fs.writeFileSync("seeds.json", JSON.stringify(seeds, null, 1));
'
finish
