#!/usr/bin/env bash
# The demo: build a sample VM (GPT disk with ext4 and NTFS, behind a 3-deep snapshot chain), inspect
# it, export it, and prove the export is byte-identical to qemu-img's reading of the same chain;
# list its files and prove a file read from NTFS equals ntfs-3g's ntfscat of it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
bash images/sample-vm.sh
vm=images/cache/sample-vm
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
before=$(sha256sum "$vm"/*.vmdk "$vm"/*.vmx)

echo "== snapferry inspect $vm/sample.vmx"
node bin/snapferry.js inspect "$vm/sample.vmx"
echo
echo "== snapferry export $vm/sample-000002.vmdk"
node bin/snapferry.js export --progress "$vm/sample-000002.vmdk" "$out/sample.raw"
qemu-img convert -f vmdk -O raw "$vm/sample-000002.vmdk" "$out/qemu.raw"
ours=$(sha256sum < "$out/sample.raw" | cut -c1-64)
theirs=$(sha256sum < "$out/qemu.raw" | cut -c1-64)
echo "snapferry export:        sha256 $ours  ($(du -h "$out/sample.raw" | cut -f1) on disk, sparse)"
echo "qemu-img convert -O raw: sha256 $theirs"
[ "$ours" = "$theirs" ] || { echo "DEMO FAILED: the export differs from qemu-img's" >&2; exit 1; }
echo
echo "== snapferry ls / cat: the guest's files, read in userspace through the chain"
node bin/snapferry.js ls "$vm/sample.vmx"
node bin/snapferry.js ls "$vm/sample.vmx" p1/home/alice
node bin/snapferry.js ls "$vm/sample.vmx" p2
# The NTFS file as ntfs-3g's ntfscat reads it from qemu's export of the same chain (a read-only loop at p2).
p2start=$(node bin/snapferry.js ls --json "$vm/sample.vmx" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const l of s.trim().split("\n")){const v=JSON.parse(l);if(v.volume.endsWith("p2"))console.log(v.start)}})')
loop=$(losetup -r -o "$p2start" -f --show "$out/qemu.raw")
ours=$(node bin/snapferry.js cat "$vm/sample.vmx" p2/data-1.bin | sha256sum | cut -c1-64)
theirs=$(ntfscat "$loop" data-1.bin | sha256sum | cut -c1-64)
losetup -d "$loop"
echo "snapferry cat p2/data-1.bin: sha256 $ours"
echo "ntfscat (ntfs-3g):           sha256 $theirs"
[ "$ours" = "$theirs" ] || { echo "DEMO FAILED: snapferry cat differs from ntfscat" >&2; exit 1; }
[ "$before" = "$(sha256sum "$vm"/*.vmdk "$vm"/*.vmx)" ] || { echo "DEMO FAILED: a source file changed" >&2; exit 1; }
echo "OK: export identical to qemu-img, cat identical to ntfscat, and every source file kept its sha256."
