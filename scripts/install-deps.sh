#!/bin/sh
# Installs the Debian packages kvz builds and tests with, when any is missing.
# Idempotent and quiet when everything is present.
set -eu
PKGS="gcc make meson ninja-build pkg-config libjansson-dev zlib1g-dev libsqlite3-dev
libmicrohttpd-dev libmnl-dev libseccomp-dev libcmocka-dev libzstd-dev
python3 python3-pytest qemu-system-x86 linux-image-amd64 busybox-static cpio
runc xfsprogs btrfs-progs debootstrap iproute2 iputils-ping e2fsprogs kmod openssh-client
clang libclang-rt-14-dev libarchive-dev libcurl4-openssl-dev libbpf-dev libnftables-dev
nftables libgnutls28-dev openssl chromium criu iptables etcd-server etcd-client
seabios grub-pc-bin grub-common xorriso liburing-dev qemu-utils"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
# The web UI's front-end is built with npm (web/package-lock.json). Any
# node >= 18 with npm will do (Debian's, or NodeSource's, which bundles npm
# and conflicts with Debian's npm package): install Debian's only when none.
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing Debian packages:$missing (run as root to install them)" >&2
	exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
