#!/usr/bin/env bash
# The sample VM of the demo and of end-to-end tests: a 256 MiB GPT disk with an ext4 partition
# (populated with mkfs.ext4 -d) and an NTFS partition (mkntfs + ntfscp), as a monolithicSparse
# base and a 3-deep delta chain in which later snapshots rewrite and add files, plus a .vmx.
source "$(dirname "$0")/lib.sh"
begin sample-vm "$0"
need qemu-img sfdisk mkfs.ext4 mkntfs ntfscp openssl
work=$OUT/work; mkdir -p "$work"

# seeded_tree DIR SEED: a small guest tree with seeded file contents.
seeded_tree() {
  local d=$1 s=$2
  mkdir -p "$d/etc" "$d/home/alice/docs" "$d/var/log"
  echo "sample-vm-$s" > "$d/etc/hostname"
  seeded "$s" 300000 > "$d/home/alice/docs/report.bin"
  seeded $((s + 1)) 4096 > "$d/var/log/messages"
  for i in $(seq 1 40); do seeded $((s * 100 + i)) $((i * 997)) > "$d/home/alice/docs/note-$i.txt"; done
}

# v1: GPT, p1 ext4 (1 MiB .. 161 MiB, populated by mkfs.ext4 -d), p2 NTFS (161 MiB .. end).
export E2FSPROGS_FAKE_TIME=1700000000
truncate -s 256M "$work/v1.raw"
sfdisk -q "$work/v1.raw" <<SF
label: gpt
label-id: 5A3C1E2B-7D4F-4E61-9A2B-0C1D2E3F4A5B
start=2048, size=327680, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=11111111-2222-4333-8444-555555555555, name="linux-root"
start=329728, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, uuid=66666666-7777-4888-9999-AAAAAAAAAAAA, name="windows-data"
SF
seeded_tree "$work/tree" 1
mkfs.ext4 -q -F -L guestroot -U 0b9b1c1e-0000-4000-8000-000000000001 -E root_owner=0:0 -d "$work/tree" "$work/ext4.img" 160M >/dev/null
ntfs_sectors=192512 # p2 as sfdisk places it (1 MiB-aligned end): the NTFS fills its partition exactly
truncate -s $((ntfs_sectors * 512)) "$work/ntfs.img"
mkntfs -q -F -Q -L WINDATA -p 329728 -H 255 -S 63 "$work/ntfs.img" >/dev/null 2>&1
seeded 7 200000 > "$work/f.bin"; ntfscp -f "$work/ntfs.img" "$work/f.bin" "data-1.bin" >/dev/null
place() { # place RAW: put the two filesystem images into their partitions
  dd if="$work/ext4.img" of="$1" bs=1M seek=1 conv=notrunc status=none
  dd if="$work/ntfs.img" of="$1" bs=512 seek=329728 conv=notrunc status=none
}
place "$work/v1.raw"

# v2 and v3: later snapshots change a few files in place, as a running guest would.
cp --sparse=always "$work/v1.raw" "$work/v2.raw"
seeded 21 120000 > "$work/new.bin"; seeded 22 5000 > "$work/msg.txt"
debugfs -w -R "rm /home/alice/docs/note-3.txt" "$work/ext4.img" >/dev/null 2>&1
debugfs -w -f - "$work/ext4.img" >/dev/null 2>&1 <<DBG
write $work/new.bin /home/alice/docs/added-in-snapshot-1.bin
rm /var/log/messages
write $work/msg.txt /var/log/messages
DBG
seeded 23 90000 > "$work/f.bin"; ntfscp -f "$work/ntfs.img" "$work/f.bin" "data-2.bin" >/dev/null
place "$work/v2.raw"
cp --sparse=always "$work/v2.raw" "$work/v3.raw"
seeded 31 400000 > "$work/new.bin"
debugfs -w -f - "$work/ext4.img" >/dev/null 2>&1 <<DBG
write $work/new.bin /home/alice/docs/added-in-snapshot-2.bin
rm /home/alice/docs/report.bin
DBG
seeded 32 300000 > "$work/f.bin"; ntfscp -f "$work/ntfs.img" "$work/f.bin" "data-1.bin" >/dev/null
place "$work/v3.raw"
cd "$OUT"
qemu-img convert -q -f raw -O vmdk -o subformat=monolithicSparse "$work/v1.raw" sample.vmdk
# Each snapshot holds only the clusters that differ from the one below.
delta_vmdk "$work/v1.raw" "$work/v2.raw" sample.vmdk sample-000001.vmdk
delta_vmdk "$work/v2.raw" "$work/v3.raw" sample-000001.vmdk sample-000002.vmdk
qemu-img compare -q -f vmdk -F raw sample-000002.vmdk "$work/v3.raw" || { echo "sample-vm: the chain does not read back as v3" >&2; exit 1; }
cat > sample.vmx <<VMX
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "19"
displayName = "sample-vm"
guestOS = "debian12-64"
scsi0.present = "TRUE"
scsi0.virtualDev = "pvscsi"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "sample-000002.vmdk"
ide1:0.present = "TRUE"
ide1:0.deviceType = "cdrom-image"
ide1:0.fileName = "/vmfs/volumes/datastore1/iso/debian-12.iso"
VMX
rm -rf "$work"
finish
