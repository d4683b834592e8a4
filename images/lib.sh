# Shared helpers for the image scripts. Images are built by real tools (qemu-img, qemu-io, sfdisk,
# mkfs), from seeded content, into images/cache/<name>/ (gitignored), and rebuilt only when the
# script that made them changes (the stamp holds the script's sha256).
set -euo pipefail
IMAGES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${SNAPFERRY_IMAGE_CACHE:-$IMAGES_DIR/cache}

need() {
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || { echo "images: required tool '$t' is missing (apt-get install it; see .ci/run)" >&2; exit 127; }
  done
}

# begin NAME [FILE...]: sets OUT to the cache dir; exits 0 at once if the cache is current. The stamp
# is the content hash of the calling script, lib.sh and any FILE (generators, structs they encode).
begin() {
  local name=$1; shift
  OUT=$CACHE_ROOT/$name
  # tap runs test files in parallel and several may ask for one image: one builds, the others wait.
  mkdir -p "$CACHE_ROOT"; exec 9>"$CACHE_ROOT/.$name.lock"; flock 9
  local stamp; stamp=$(cat "${BASH_SOURCE[1]}" "$IMAGES_DIR/lib.sh" "$@" | sha256sum | cut -c1-16)
  if [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$stamp" ]; then exit 0; fi
  rm -rf "$OUT"; mkdir -p "$OUT"
  STAMP=$stamp
  trap 'rm -rf "$OUT"' ERR
}

# finish: marks the cache current.
finish() { echo "$STAMP" > "$OUT/.stamp"; trap - ERR; }

# seeded SEED BYTES: deterministic pseudo-random bytes on stdout (AES-CTR keystream of the seed).
seeded() {
  local key; key=$(printf '%032x' "$1")
  head -c "$2" < <(openssl enc -aes-128-ctr -K "$key" -iv 00000000000000000000000000000000 -nosalt < /dev/zero 2>/dev/null)
}

# qio IMAGE FORMAT CMD...: qemu-io writes, e.g. qio d.vmdk vmdk "write -P 0x5a 1M 64k"
qio() {
  local img=$1 fmt=$2; shift 2
  local args=()
  for c in "$@"; do args+=(-c "$c"); done
  qemu-io -f "$fmt" "${args[@]}" "$img" >/dev/null
}

# delta_vmdk OLD_RAW NEW_RAW PARENT CHILD: a monolithicSparse child of PARENT holding exactly the
# 64 KiB clusters where NEW_RAW differs from OLD_RAW (qemu cannot rebase VMDKs, so qemu-io writes them).
delta_vmdk() {
  local old=$1 new=$2 parent=$3 child=$4 tmp; tmp=$(mktemp)
  qemu-img create -q -f vmdk -b "$(basename "$parent")" -F vmdk "$child"
  local cmds=()
  while read -r off len; do
    dd if="$new" of="$tmp.$off" bs=64K skip=$((off / 65536)) count=$((len / 65536 + 1)) status=none
    cmds+=("write -q -s $tmp.$off $off $len")
  done < <(node "$IMAGES_DIR/diff-ranges.mjs" "$old" "$new")
  [ ${#cmds[@]} -eq 0 ] || qio "$child" vmdk "${cmds[@]}"
  rm -f "$tmp" "$tmp".*
}
