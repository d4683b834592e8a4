#!/usr/bin/env bash
# Installs what snapferry's demo and tests need on a fresh Debian 12 (as root): the real tools that
# make test images and act as oracles, and the npm packages. Idempotent and quiet when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# tool -> Debian package
declare -A PKG=(
  [qemu-img]=qemu-utils [qemu-io]=qemu-utils [sfdisk]=fdisk [losetup]=mount [blkid]=util-linux
  [mkfs.ext4]=e2fsprogs [debugfs]=e2fsprogs [mkntfs]=ntfs-3g [ntfscp]=ntfs-3g [fls]=sleuthkit
  [getfattr]=attr [mkfs.vfat]=dosfstools [mkfs.exfat]=exfatprogs [mkswap]=util-linux [openssl]=openssl [pvcreate]=lvm2
  [wimlib-imagex]=wimtools # libwim.so.15: the independent XPRESS/LZX compressor of images/gen-wof.py
  [fusermount]=fuse3 [setfattr]=attr [fuse2fs]=fuse2fs
  # the stock tools that restore an archive with no snapferry installed, and the real sshd the SFTP tests start
  [age]=age [zstd]=zstd [tar]=tar [sshd]=openssh-server [ssh]=openssh-client [ssh-keygen]=openssh-client [sftp]=openssh-client
  # the agent tests: strace sees every open of a disk (O_RDONLY only), ss sees an ssh -L forward listen
  [strace]=strace [ss]=iproute2 [systemd-analyze]=systemd [sudo]=sudo [visudo]=sudo [useradd]=passwd [userdel]=passwd
  # the appliance image (appliance/build, packer/build) and the test that boots it under qemu
  [debootstrap]=debootstrap [packer]=packer [qemu-system-x86_64]=qemu-system-x86 [age-keygen]=age
  # image backups: a disk's blocksSha256 with stock tools (split | sha256sum | xxd -r -p | sha256sum)
  [xxd]=xxd
)
missing=()
for tool in "${!PKG[@]}"; do command -v "$tool" >/dev/null 2>&1 || missing+=("${PKG[$tool]}"); done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "setup: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then echo "setup: need root to apt-get install ${missing[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  for tool in "${!PKG[@]}"; do command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool still missing after installing ${PKG[$tool]}" >&2; exit 1; }; done
fi

# npm packages: `npm ci` when the lockfile changed since the last install.
stamp=node_modules/.snapferry-lock-sha
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
npm run --silent build
