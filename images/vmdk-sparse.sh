#!/usr/bin/env bash
# Hosted sparse VMDK extents (VMware Virtual Disk Format 1.1, "Hosted Sparse Extents" and
# "Stream-Optimized Compressed Sparse Extents"), made by qemu-img/qemu-io from seeded data:
#   scattered.vmdk  monolithicSparse 48 MiB: scattered writes, one crossing a grain boundary, one at
#                   the last sector, large holes
#   zeroed.vmdk     the same with zeroed_grain=on and `write -z` regions (GTE 1 = zeroed grain)
#   stream.vmdk     streamOptimized converted from a seeded raw with holes (deflated grains, markers)
#   split.vmdk      twoGbMaxExtentSparse 2.2 GiB: split-s001.vmdk, split-s002.vmdk are sparse extents
#   big.vmdk        1 GiB monolithicSparse with ~300 MiB of seeded data (benchmark); its grains are
#                   partly in disk order (convert) and partly shuffled (qemu-io writes in random order)
# qemu cannot make a grain size other than 128 sectors, so none is made here.
source "$(dirname "$0")/lib.sh"
begin vmdk-sparse "$0"
need qemu-img qemu-io openssl dd
work=$OUT/work; mkdir -p "$work"
cd "$OUT"

# scattered_writes IMG: seeded writes at scattered offsets of a 48 MiB disk.
scattered_writes() {
  local img=$1
  seeded 101 200000 > "$work/a.bin"   # 1 MiB + odd tail, crossing grain boundaries
  seeded 102 70000 > "$work/b.bin"
  seeded 103 512 > "$work/c.bin"
  seeded 104 4096 > "$work/d.bin"
  qio "$img" vmdk \
    "write -q -s $work/a.bin 1048576 200000" \
    "write -q -s $work/b.bin 3211264 70000" \
    "write -q -s $work/d.bin 131068 4096" \
    "write -q -P 0x5a 20971520 65536" \
    "write -q -s $work/d.bin 33558016 4096" \
    "write -q -s $work/c.bin $((48 * 1048576 - 512)) 512"
}

# monolithicSparse with holes.
qemu-img create -q -f vmdk -o subformat=monolithicSparse scattered.vmdk 48M
scattered_writes scattered.vmdk

# zeroed grains: the same writes, then zero writes over whole grains (GTE 1) and partial grains.
qemu-img create -q -f vmdk -o subformat=monolithicSparse,zeroed_grain=on zeroed.vmdk 48M
scattered_writes zeroed.vmdk
qio zeroed.vmdk vmdk \
  "write -q -z 1048576 131072" \
  "write -q -z 8388608 1048576" \
  "write -q -z 20975616 4096" \
  "write -q -z 40894464 65536"

# streamOptimized from a seeded raw with holes (and one all-zero stretch written as data).
truncate -s 40M "$work/stream.raw"
seeded 201 3000000 | dd of="$work/stream.raw" bs=64K seek=3 conv=notrunc status=none
seeded 202 100000 | dd of="$work/stream.raw" bs=1 seek=17000000 conv=notrunc status=none
head -c 65536 /dev/zero | tr '\0' 'A' | dd of="$work/stream.raw" bs=64K seek=500 conv=notrunc status=none
seeded 203 777 | dd of="$work/stream.raw" bs=1 seek=$((40 * 1048576 - 777)) conv=notrunc status=none
qemu-img convert -q -f raw -O vmdk -o subformat=streamOptimized "$work/stream.raw" stream.vmdk
cp "$work/stream.raw" stream-source.raw

# twoGbMaxExtentSparse: the extents are hosted sparse files of their own.
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse split.vmdk 2200M
seeded 301 300000 > "$work/s.bin"
qio split.vmdk vmdk \
  "write -q -s $work/s.bin 4096 300000" \
  "write -q -s $work/s.bin $((2047 * 1048576)) 300000" \
  "write -q -P 0x33 $((2100 * 1048576)) 131072" \
  "write -q -s $work/c.bin $((2200 * 1048576 - 512)) 512"

# big.vmdk: 1 GiB, ~250 MiB converted in disk order + ~50 MiB of shuffled 64 KiB writes.
truncate -s 1G "$work/big.raw"
for i in $(seq 0 9); do
  seeded $((400 + i)) $((25 * 1048576)) | dd of="$work/big.raw" bs=1M seek=$((i * 100 + 3)) conv=notrunc status=none
done
qemu-img convert -q -f raw -O vmdk -o subformat=monolithicSparse "$work/big.raw" big.vmdk
rm -f "$work/big.raw"
cmds=()
for i in $(seq 0 799); do
  # a fixed permutation of 800 grain-aligned slots over the disk (multiplier coprime to 800)
  slot=$(( (i * 337 + 11) % 800 ))
  off=$(( slot * 1310720 + 65536 * (i % 7) ))
  cmds+=("write -q -P $(( (i * 7 + 1) % 255 + 1 )) $off 65536")
done
qio big.vmdk vmdk "${cmds[@]}"

rm -rf "$work"
finish
