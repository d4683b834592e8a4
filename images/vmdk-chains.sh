#!/usr/bin/env bash
# VMDK create types, delta chains, hand-written descriptors and a .vmx, made by qemu-img/qemu-io
# from seeded data. qemu-img convert -O raw of each top file is the oracle (test/helpers/images.ts).
# Order matters in a chain: qemu rewrites a VMDK's CID on its first write, so a parent is never
# written after its child was created (the child's parentCID would no longer match).
source "$(dirname "$0")/lib.sh"
begin vmdk-chains
need qemu-img qemu-io openssl flock
cd "$OUT"
tmp=$OUT/tmp; mkdir -p "$tmp"

# pattern SEED BYTES: a seeded pattern file for qemu-io's "write -s FILE OFFSET LENGTH".
pattern() { local f=$tmp/p-$1-$2; [ -f "$f" ] || seeded "$1" "$2" > "$f"; echo "$f"; }

# --- A monolithicSparse chain, 4 deep (base <- snap1 <- snap2 <- snap3), 64 MiB, 64 KiB grains.
qemu-img create -q -f vmdk base.vmdk 64M
qio base.vmdk vmdk \
  "write -q -s $(pattern 1 2097152) 0 2M" \
  "write -q -P 0x11 4M 1M" \
  "write -q -s $(pattern 2 327680) 10M 320k" \
  "write -q -P 0x12 63M 1M"
qemu-img create -q -f vmdk -b base.vmdk -F vmdk snap1.vmdk
# Overlapping the base, unaligned to grains, crossing grain boundaries (64 KiB) by one sector.
qio snap1.vmdk vmdk \
  "write -q -s $(pattern 3 1024) 65024 1024" \
  "write -q -P 0x21 1536k 1M" \
  "write -q -s $(pattern 4 200704) 4300800 200704" \
  "write -q -P 0x22 20M 512"
qemu-img create -q -f vmdk -o zeroed_grain=on -b snap1.vmdk -F vmdk snap2.vmdk
# zeroed_grain: "write -z" of whole grains leaves zeroed grain table entries over the parent's data.
qio snap2.vmdk vmdk \
  "write -q -z 4M 128k" \
  "write -q -s $(pattern 5 131072) 1M 128k" \
  "write -q -P 0x31 65536 512" \
  "write -q -z 10M 64k"
qemu-img create -q -f vmdk -b snap2.vmdk -F vmdk snap3.vmdk
qio snap3.vmdk vmdk \
  "write -q -P 0x41 1M 4096" \
  "write -q -s $(pattern 6 1048576) 30M 1M" \
  "write -q -P 0x42 4161536 8192"

# A text-descriptor delta (twoGbMaxExtentSparse) of base whose parentFileNameHint is absolute.
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse -b "$OUT/base.vmdk" -F vmdk abs-child.vmdk
qio abs-child.vmdk vmdk "write -q -P 0x91 2M 192k" "write -q -s $(pattern 18 70000) 63M 70000"

# --- monolithicFlat (a text descriptor and one -flat extent).
qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.vmdk 16M
qio flat.vmdk vmdk "write -q -s $(pattern 7 1048576) 1M 1M" "write -q -P 0x51 15M 1M"

# --- twoGbMaxExtentSparse / twoGbMaxExtentFlat just over 2 GiB: two extents, data in the second
# and across the extent boundary (qemu splits at 2 GiB).
for sub in twoGbMaxExtentSparse twoGbMaxExtentFlat; do
  qemu-img create -q -f vmdk -o subformat=$sub $sub.vmdk 2049M
  qio $sub.vmdk vmdk \
    "write -q -s $(pattern 8 1048576) 0 1M" \
    "write -q -s $(pattern 9 524288) 2147155968 512k" \
    "write -q -P 0x61 2148007936 65536" \
    "write -q -P 0x62 2148466688 65536"
done

# --- streamOptimized base (deflated grains, markers, footer) with a monolithicSparse child.
{ seeded 10 3145728; head -c 2097152 /dev/zero; seeded 11 1048576; } > "$tmp/so.raw"
truncate -s 8M "$tmp/so.raw"
qemu-img convert -q -f raw -O vmdk -o subformat=streamOptimized "$tmp/so.raw" stream.vmdk
qemu-img create -q -f vmdk -b stream.vmdk -F vmdk stream-child.vmdk
qio stream-child.vmdk vmdk "write -q -P 0x71 3M 64k" "write -q -s $(pattern 12 98304) 6272k 96k"

# --- A hand-written vmfs descriptor: FLAT at a nonzero start offset, ZERO, VMFS, and SPARSE.
# qemu ignores ZERO extent lines, so the oracle reads hand-twin.vmdk, where the ZERO extent is a
# FLAT extent over a file of zeros; everything else is the same.
seeded 13 3145728 > hand-data.bin
seeded 14 512000 > hand-vmfs.bin
truncate -s 1M hand-zeros.bin
qemu-img create -q -f vmdk hand-sparse.vmdk 2M
qio hand-sparse.vmdk vmdk "write -q -P 0x81 64k 64k" "write -q -s $(pattern 15 65536) 1M 64k"
hand_desc() { # hand_desc ZERO_LINE
  cat <<DESC
# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=1234abcd
parentCID=ffffffff
createType="vmfs"

# Extent description
RW 2048 FLAT "hand-data.bin" 1024
$1
RW 1000 VMFS "hand-vmfs.bin"
RW 4096 SPARSE "hand-sparse.vmdk"

# The Disk Data Base
#DDB

ddb.virtualHWVersion = "14"
ddb.adapterType = "lsilogic"
ddb.geometry.cylinders = "1"
ddb.geometry.heads = "255"
ddb.geometry.sectors = "63"
ddb.uuid = "60 00 C2 9a 1b 2c 3d 4e-5f 60 71 82 93 a4 b5 c6"
DESC
}
hand_desc 'RW 2048 ZERO' > hand.vmdk
hand_desc 'RW 2048 FLAT "hand-zeros.bin" 0' > hand-twin.vmdk

# --- A raw image (with holes) for the raw and loop-device paths.
truncate -s 8M raw.img
seeded 16 1048576 | dd of=raw.img bs=1M seek=2 conv=notrunc status=none
seeded 17 4096 | dd of=raw.img bs=4096 seek=1500 conv=notrunc status=none

# --- A VM: its scsi0:0 is the top of the 4-deep chain; a cdrom, a disk marked not present, and a
# sata disk (monolithicFlat) with an escaped quote in the VM's name.
cat > vm.vmx <<'VMX'
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "19"
displayName = "chain |22test|22 vm"
guestOS = "other5xlinux-64"
scsi0.present = "TRUE"
scsi0.virtualDev = "lsilogic"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "snap3.vmdk"
scsi0:1.present = "FALSE"
scsi0:1.fileName = "base.vmdk"
sata0.present = "TRUE"
sata0:0.present = "TRUE"
sata0:0.fileName = "flat.vmdk"
sata0:1.present = "TRUE"
sata0:1.deviceType = "cdrom-image"
sata0:1.fileName = "/vmfs/volumes/datastore1/iso/install.iso"
ide1:0.present = "TRUE"
ide1:0.deviceType = "atapi-cdrom"
ide1:0.fileName = "auto detect"
VMX

# Sanity: qemu reads every top file.
for f in snap3 abs-child flat twoGbMaxExtentSparse twoGbMaxExtentFlat stream-child hand-twin; do
  qemu-img info "$f.vmdk" >/dev/null
done
rm -rf "$tmp"
finish
