#!/usr/bin/env bash
# Partition-table test disks for src/volume, made by sfdisk with real filesystems (mkfs.*) in them:
#   mbr.raw          3 primaries (ext2 bootable, NTFS, FAT32) + an extended with 4 logicals (ext3, swap, FAT16, exFAT)
#   gpt.raw          7 named partitions in slots 1-7 and 9 (FAT12 ESP, ext4, NTFS, swap, LVM2 PV, exFAT, empty, empty)
#   gpt-badhdr.raw   gpt.raw with one byte of the primary header changed (header CRC fails)
#   gpt-badarray.raw gpt.raw with one byte of the primary entry array changed (array CRC fails)
#   gpt-bothbad.raw  gpt.raw with both headers damaged
#   gpt4k.raw        a GPT written for 4096-byte logical sectors (through a loop device with
#                    --sector-size 4096; gpt4k.json is sfdisk --json of that loop device)
#   whole-ext4.raw   ext4 on the whole file, no table;  whole-fat.raw  FAT16 on the whole file
# Filesystems are made in scratch files and copied in with dd, so no loop device is needed except
# for the 4Kn table and the LVM PV (pvcreate refuses regular files); both are detached on exit.
source "$(dirname "$0")/lib.sh"
begin volumes "$0"
need flock sfdisk losetup mkfs.ext2 mkfs.ext3 mkfs.ext4 mkntfs mkfs.fat mkfs.exfat mkswap pvcreate dd
work=$OUT/work; mkdir -p "$work"
export E2FSPROGS_FAKE_TIME=1700000000
LOOPS=()
cleanup() { for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done; }
trap cleanup EXIT

# put IMG START_SECTOR SECTOR_SIZE FSFILE: copy a filesystem image into a partition.
put() { dd if="$4" of="$1" bs="$3" seek="$2" conv=notrunc,sparse status=none; }
# fsfile NAME SECTORS [SECTOR_SIZE]: an empty scratch file the size of a partition.
fsfile() { rm -f "$work/$1"; truncate -s $(( $2 * ${3:-512} )) "$work/$1"; echo "$work/$1"; }
LVM_CONFIG='devices { filter=["a|.*|"] obtain_device_list_from_udev=0 } activation { udev_sync=0 udev_rules=0 }'

# ---- MBR: p1-p3 primaries, p4 extended, p5-p8 logicals (explicit starts leave room for each EBR).
truncate -s 160M "$OUT/mbr.raw"
sfdisk -q "$OUT/mbr.raw" <<SF
label: dos
label-id: 0x5a5a1234
start=2048, size=16384, type=83, bootable
start=18432, size=16384, type=7
start=34816, size=81920, type=c
start=116736, size=210944, type=5
start=118784, size=32768, type=83
start=153600, size=16384, type=82
start=172032, size=32768, type=6
start=206848, size=16384, type=7
SF
f=$(fsfile p1 16384); mkfs.ext2 -q -F -L mbr-ext2 -U 1e2e0000-0000-4000-8000-000000000001 "$f"; put "$OUT/mbr.raw" 2048 512 "$f"
f=$(fsfile p2 16384); mkntfs -q -F -Q -L MBRNTFS -p 18432 -H 255 -S 63 "$f" >/dev/null 2>&1; put "$OUT/mbr.raw" 18432 512 "$f"
f=$(fsfile p3 81920); mkfs.fat -F 32 -s 1 -n MBRFAT32 -i 3a3b3c3d "$f" >/dev/null; put "$OUT/mbr.raw" 34816 512 "$f"
f=$(fsfile p5 32768); mkfs.ext3 -q -F -L mbr-ext3 -U 1e3e0000-0000-4000-8000-000000000005 "$f"; put "$OUT/mbr.raw" 118784 512 "$f"
f=$(fsfile p6 16384); mkswap -q -L mbrswap -U 5a5a0000-0000-4000-8000-000000000006 "$f" >/dev/null; put "$OUT/mbr.raw" 153600 512 "$f"
f=$(fsfile p7 32768); mkfs.fat -F 16 -n MBRFAT16 -i 16161616 "$f" >/dev/null; put "$OUT/mbr.raw" 172032 512 "$f"
f=$(fsfile p8 16384); mkfs.exfat -L MBREXFAT "$f" >/dev/null; put "$OUT/mbr.raw" 206848 512 "$f"

# ---- GPT: named partitions; slot 8 left empty so p9 proves numbering by entry slot.
truncate -s 64M "$OUT/gpt.raw"
sfdisk -q "$OUT/gpt.raw" <<SF
label: gpt
label-id: 6B3E1C2A-9D4F-4E61-8A2B-0C1D2E3F4A5B
$OUT/gpt.raw1 : start=2048, size=8192, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=0E5F0001-0000-4000-8000-000000000001, name="EFI system"
$OUT/gpt.raw2 : start=10240, size=24576, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=0E5F0002-0000-4000-8000-000000000002, name="linux root"
$OUT/gpt.raw3 : start=34816, size=16384, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, uuid=0E5F0003-0000-4000-8000-000000000003, name="windows data"
$OUT/gpt.raw4 : start=51200, size=8192, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, uuid=0E5F0004-0000-4000-8000-000000000004, name="swap"
$OUT/gpt.raw5 : start=59392, size=8192, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, uuid=0E5F0005-0000-4000-8000-000000000005, name="lvm pv"
$OUT/gpt.raw6 : start=67584, size=16384, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, uuid=0E5F0006-0000-4000-8000-000000000006, name="exfat data ü"
$OUT/gpt.raw7 : start=83968, size=4096, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=0E5F0007-0000-4000-8000-000000000007, name="empty"
$OUT/gpt.raw9 : start=90112, size=4096, type=933AC7E1-2EB4-4F13-B844-0E14E2AEF915, uuid=0E5F0009-0000-4000-8000-000000000009
SF
f=$(fsfile g1 8192); mkfs.fat -F 12 -n ESP -i 12121212 "$f" >/dev/null; put "$OUT/gpt.raw" 2048 512 "$f"
f=$(fsfile g2 24576); mkfs.ext4 -q -F -L rootfs -U 4e4e0000-0000-4000-8000-000000000002 "$f"; put "$OUT/gpt.raw" 10240 512 "$f"
f=$(fsfile g3 16384); mkntfs -q -F -Q -L WINDATA -p 34816 -H 255 -S 63 "$f" >/dev/null 2>&1; put "$OUT/gpt.raw" 34816 512 "$f"
f=$(fsfile g4 8192); mkswap -q -L gptswap -U 5a5a0000-0000-4000-8000-000000000004 "$f" >/dev/null; put "$OUT/gpt.raw" 51200 512 "$f"
f=$(fsfile g5 8192); l=$(losetup -f --show "$f"); LOOPS+=("$l")
pvcreate -q -ff -y --norestorefile -u Lvm2Pv-0000-1111-2222-3333-4444-555555 --config "$LVM_CONFIG" "$l" >/dev/null 2>&1
losetup -d "$l"; put "$OUT/gpt.raw" 59392 512 "$f"
f=$(fsfile g6 16384); mkfs.exfat -L GPTEXFAT "$f" >/dev/null; put "$OUT/gpt.raw" 67584 512 "$f"

# flip IMG OFFSET: invert one byte in place.
flip() {
  local b; b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $(( 255 - b )))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
cp --sparse=always "$OUT/gpt.raw" "$OUT/gpt-badhdr.raw"; flip "$OUT/gpt-badhdr.raw" $(( 512 + 60 ))     # a DiskGUID byte
cp --sparse=always "$OUT/gpt.raw" "$OUT/gpt-badarray.raw"; flip "$OUT/gpt-badarray.raw" $(( 1024 + 128 + 60 )) # p2's name
cp --sparse=always "$OUT/gpt.raw" "$OUT/gpt-bothbad.raw"; flip "$OUT/gpt-bothbad.raw" $(( 512 + 60 ))
flip "$OUT/gpt-bothbad.raw" $(( 64 * 1024 * 1024 - 512 + 60 ))

# ---- 4Kn GPT: sfdisk through a loop device that has 4096-byte logical sectors.
truncate -s 32M "$OUT/gpt4k.raw"
l=$(losetup --sector-size 4096 -f --show "$OUT/gpt4k.raw"); LOOPS+=("$l")
sfdisk -q --no-reread --no-tell-kernel "$l" <<SF
label: gpt
label-id: 4C4B0000-1111-4222-8333-444444444444
start=256, size=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=4C4B0001-0000-4000-8000-000000000001, name="4k ext4"
start=2304, size=2048, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, uuid=4C4B0002-0000-4000-8000-000000000002, name="4k ntfs"
SF
sfdisk --json "$l" > "$OUT/gpt4k.json"
losetup -d "$l"
f=$(fsfile k1 2048 4096); mkfs.ext4 -q -F -b 4096 -L ext4on4k -U 4c4b0000-0000-4000-8000-00000000e4e4 "$f"; put "$OUT/gpt4k.raw" 256 4096 "$f"
f=$(fsfile k2 2048 4096); mkntfs -q -F -Q -s 4096 -L NTFS4K -p 2304 -H 255 -S 63 "$f" >/dev/null 2>&1; put "$OUT/gpt4k.raw" 2304 4096 "$f"

# ---- no table: a filesystem on the whole disk.
truncate -s 16M "$OUT/whole-ext4.raw"
mkfs.ext4 -q -F -L wholedisk -U 3e3e0000-0000-4000-8000-00000000a11a "$OUT/whole-ext4.raw"
truncate -s 16M "$OUT/whole-fat.raw"
mkfs.fat -F 16 -n WHOLEFAT -i 0badcafe "$OUT/whole-fat.raw" >/dev/null

rm -rf "$work"
finish
