#!/usr/bin/env bash
# Disks for bench/disk.sh: a 1 GiB monolithicSparse disk holding 512 MiB of seeded data in 1 MiB
# runs every 2 MiB, and a 3-deep chain on top of it whose deltas rewrite scattered 64 KiB..1 MiB
# ranges (about 200 MiB per delta).
source "$(dirname "$0")/lib.sh"
begin bench-disk "$0"
need qemu-img qemu-io openssl
cd "$OUT"
truncate -s 1G base.raw
seeded 1001 $((512 * 1024 * 1024)) > data.bin
# Spread the data: chunk i (1 MiB) goes to offset 2 MiB * i.
for i in $(seq 0 511); do
  dd if=data.bin of=base.raw bs=1M skip=$i seek=$((i * 2)) count=1 conv=notrunc status=none
done
rm data.bin
qemu-img convert -q -f raw -O vmdk -o subformat=monolithicSparse base.raw big.vmdk
rm base.raw
prev=big.vmdk
for level in 1 2 3; do
  qemu-img create -q -f vmdk -b "$prev" -F vmdk "delta$level.vmdk"
  cmds=()
  for j in $(seq 0 199); do
    off=$(( ((j * 7919 + level * 104729) % 1000) * 1024 * 1024 + (j % 16) * 65536 ))
    cmds+=("write -q -P $(( (level * 37 + j) % 250 + 1 )) $off $(( 65536 * (1 + j % 16) ))")
  done
  qio "delta$level.vmdk" vmdk "${cmds[@]}"
  prev="delta$level.vmdk"
done
finish
