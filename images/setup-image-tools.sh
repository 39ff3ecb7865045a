#!/usr/bin/env bash
# Installs what images/build-image.sh and images/test-image.sh need on Debian 12, idempotently:
# mmdebstrap, GRUB's BIOS and EFI images, mtools and dosfstools, OVMF, and QEMU. QEMU comes from
# bookworm-backports when the machine's qemu-utils already does (a newer qemu-utils breaks
# bookworm's qemu-system); otherwise from bookworm.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
tools=(mmdebstrap grub-pc-bin grub-efi-amd64-bin grub2-common mtools dosfstools e2fsprogs fdisk ovmf
  python3 nginx iproute2 ethtool curl)
need=()
for p in "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
qemu_from=()
if ! command -v qemu-system-x86_64 >/dev/null; then
  utils=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
  if [[ "$utils" == *bpo12* ]]; then
    if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
      cat > /etc/apt/sources.list.d/rvs-bookworm-backports.sources <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    qemu_from=(-t bookworm-backports)
  fi
  need+=(qemu-system-x86 qemu-utils)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup-image-tools: installing ${need[*]}"
  apt-get update -qq
  # qemu first (maybe from backports), then the rest from bookworm.
  qemu=() rest=()
  for p in "${need[@]}"; do
    case "$p" in qemu-*) qemu+=("$p") ;; *) rest+=("$p") ;; esac
  done
  [ ${#qemu[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${qemu_from[@]}" "${qemu[@]}" >/dev/null
  [ ${#rest[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${rest[@]}" >/dev/null
fi
echo "setup-image-tools: ok"
