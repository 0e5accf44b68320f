#!/usr/bin/env bash
# Provision the project's own Asterisk 22: a cached Debian sid tree with asterisk, asterisk-dev,
# sip-tester (sipp) and sox, plus the host packages the build needs (libclang-dev for bindgen).
#
#   scripts/sandbox.sh            build or reuse .sandbox/sid (idempotent; a second run takes seconds)
#   CALLCONSENT_SANDBOX=DIR       keep the tree somewhere else (default: <project>/.sandbox)
#
# proc and /dev are mounted only inside a private mount namespace (unshare -m) that dies with the
# install: no mount of the host ever outlives this script, so deleting the tree is always safe.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
box=${CALLCONSENT_SANDBOX:-$here/.sandbox}
root=$box/sid
mirror=${CALLCONSENT_MIRROR:-http://deb.debian.org/debian}
stamp=$root/.callconsent-ready-v1
# lintian: scripts/package.sh and tests/e2e_package.rs check the .deb files with the lintian of the
# Debian they are for (sid), not the host's.
packages="asterisk asterisk-dev sip-tester sox espeak-ng opus-tools lintian"

need_host=()
command -v debootstrap >/dev/null || need_host+=(debootstrap)
# bindgen loads libclang itself (libclang-14.so.* from libclang1-14, pulled in by libclang-dev).
ls /usr/lib/x86_64-linux-gnu/libclang-[0-9]*.so* /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 \
  || need_host+=(libclang-dev)
command -v sox >/dev/null || need_host+=(sox)
command -v unshare >/dev/null || need_host+=(util-linux)
# The opus crate links the host's libopus through pkg-config.
pkg-config --exists opus 2>/dev/null || need_host+=(libopus-dev pkg-config)
# scripts/package.sh: the tool's man page (help2man), the packages' library dependencies
# (dpkg-shlibdeps) and the tests' mount namespace (nsenter, with unshare above).
command -v help2man >/dev/null || need_host+=(help2man)
command -v dpkg-shlibdeps >/dev/null || need_host+=(dpkg-dev)
command -v nsenter >/dev/null || need_host+=(util-linux)
# The console's end-to-end tests: a real headless Chromium driven over WebDriver (issue 13).
command -v chromium >/dev/null || need_host+=(chromium)
command -v chromedriver >/dev/null || need_host+=(chromium-driver)
command -v pdftotext >/dev/null || need_host+=(poppler-utils)
command -v openssl >/dev/null || need_host+=(openssl)
command -v curl >/dev/null || need_host+=(curl)
# The shared store's tests: a throwaway PostgreSQL cluster (issue 14).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_host+=(postgresql)
# ... with TLS to a test CA the tests make (openssl req), and runuser to run it as postgres.
command -v openssl >/dev/null || need_host+=(openssl)
command -v runuser >/dev/null || need_host+=(util-linux)
if [ ${#need_host[@]} -gt 0 ]; then
  echo "sandbox: installing host packages: ${need_host[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_host[@]}" >/dev/null
fi

# Installs packages into a tree; proc and /dev exist only in this private mount namespace.
install_packages() {
  unshare -m --propagation private -- bash -euc '
    r=$1; shift
    mount -t proc proc "$r/proc"
    mount --rbind /dev "$r/dev"
    chroot "$r" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive chroot "$r" apt-get install -y -qq --no-install-recommends "$@"
    chroot "$r" apt-get clean
  ' _ "$1" $packages >"$box/apt.log" 2>&1 \
    || { tail -30 "$box/apt.log"; echo "sandbox: package install failed (log: $box/apt.log)" >&2; exit 1; }
}

if [ -f "$stamp" ]; then
  if [ "$(cat "$root/.callconsent-packages" 2>/dev/null)" != "$packages" ]; then
    echo "sandbox: adding packages to the cached tree: $packages"
    install_packages "$root"
    echo "$packages" >"$root/.callconsent-packages"
  fi
  echo "sandbox: ready at $root ($(cat "$stamp"))"
  exit 0
fi

echo "sandbox: building Debian sid tree in $root (about a minute)"
rm -rf "$root.partial"
mkdir -p "$box"
debootstrap --variant=minbase sid "$root.partial" "$mirror" >"$box/debootstrap.log" 2>&1 \
  || { tail -20 "$box/debootstrap.log"; echo "sandbox: debootstrap failed (log: $box/debootstrap.log)" >&2; exit 1; }
echo 'Acquire::Check-Valid-Until "false";' >"$root.partial/etc/apt/apt.conf.d/99callconsent-expired-release"
# PJSIP resolves the host's own name: without it every call stalls on DNS.
{ echo "127.0.0.1 localhost"; echo "127.0.1.1 $(hostname)"; } >"$root.partial/etc/hosts"
cp /etc/resolv.conf "$root.partial/etc/resolv.conf" 2>/dev/null || true
printf '#!/bin/sh\nexit 101\n' >"$root.partial/usr/sbin/policy-rc.d"; chmod +x "$root.partial/usr/sbin/policy-rc.d"

install_packages "$root.partial"
echo "$packages" >"$root.partial/.callconsent-packages"

# Static device nodes so Asterisk runs chrooted without any mount.
for d in null:1:3 zero:1:5 random:1:8 urandom:1:9; do
  IFS=: read -r n ma mi <<<"$d"
  rm -f "$root.partial/dev/$n"; mknod -m 666 "$root.partial/dev/$n" c "$ma" "$mi"
done
mv "$root.partial" "$root"
chroot "$root" asterisk -V >"$stamp"
echo "sandbox: ready at $root ($(cat "$stamp"))"
