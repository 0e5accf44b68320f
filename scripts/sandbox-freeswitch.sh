#!/usr/bin/env bash
# Provision the project's own FreeSWITCH 1.10.12, built from the release sources in
# ../shared/thirdparty/freeswitch (checked against SHA256SUMS; never copied into the repository).
#
#   scripts/sandbox-freeswitch.sh   build or reuse .sandbox/freeswitch (idempotent; a second run is instant)
#   CALLCONSENT_SANDBOX=DIR         keep the sandbox somewhere else (default: <project>/.sandbox)
#   CALLCONSENT_FS_SOURCES=DIR      where the tarballs are (default: <project>/../shared/thirdparty/freeswitch)
#
# Layout: $box/freeswitch        FreeSWITCH (--disable-fhs: bin/ lib/ mod/ conf/ include/freeswitch/ ...)
#         $box/freeswitch-deps   sofia-sip and spandsp (found at run time through RUNPATH)
#         $box/fs-build/         build trees, removed after a successful install
#         $box/fs-build-*.log    one log per step
# The build runs under nice -n 19 with make -j2 (about 4-5 minutes on 2 cores).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
box=${CALLCONSENT_SANDBOX:-$here/.sandbox}
src=${CALLCONSENT_FS_SOURCES:-$here/../shared/thirdparty/freeswitch}
prefix=$box/freeswitch
deps=$box/freeswitch-deps
build=$box/fs-build
stamp=$prefix/.callconsent-ready-v1
fs_tar=freeswitch-1.10.12.tar.xz
sofia_tar=sofia-sip-1.13.17.tar.xz
spandsp_tar=spandsp-3.0.0-0c7bceb.tar.xz
host_packages="autoconf automake libtool libtool-bin pkg-config build-essential libssl-dev
  libcurl4-openssl-dev libpcre3-dev libspeex-dev libspeexdsp-dev libsqlite3-dev libedit-dev
  libtiff-dev libjpeg-dev uuid-dev zlib1g-dev libsndfile1-dev"
# Enough for SIP calls with recording and DTMF. mod_fsv must stay out: its 4k test file is
# not in the release snapshot.
modules="applications/mod_commands
applications/mod_dptools
dialplans/mod_dialplan_xml
endpoints/mod_loopback
endpoints/mod_sofia
event_handlers/mod_event_socket
formats/mod_native_file
formats/mod_sndfile
formats/mod_tone_stream
loggers/mod_console
loggers/mod_logfile"

if [ -f "$stamp" ]; then
  echo "sandbox: FreeSWITCH ready at $prefix ($(cat "$stamp"))"
  exit 0
fi

start=$SECONDS
[ -d "$src" ] || { echo "sandbox: FreeSWITCH sources not found in $src (set CALLCONSENT_FS_SOURCES)" >&2; exit 1; }
for f in SHA256SUMS "$fs_tar" "$sofia_tar" "$spandsp_tar"; do
  [ -f "$src/$f" ] || { echo "sandbox: missing $src/$f (set CALLCONSENT_FS_SOURCES)" >&2; exit 1; }
done
(cd "$src" && sha256sum --quiet -c SHA256SUMS) \
  || { echo "sandbox: checksum mismatch in $src (sha256sum -c SHA256SUMS)" >&2; exit 1; }

need_host=()
for p in $host_packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_host+=("$p")
done
mkdir -p "$box"
if [ ${#need_host[@]} -gt 0 ]; then
  echo "sandbox: installing host packages: ${need_host[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_host[@]}"; } \
    >"$box/fs-apt.log" 2>&1 \
    || { tail -30 "$box/fs-apt.log"; echo "sandbox: package install failed (log: $box/fs-apt.log)" >&2; exit 1; }
fi

# step NAME DIR CMD...: runs CMD in DIR at the lowest priority, logging to $box/fs-build-NAME.log.
step() {
  local name=$1 dir=$2; shift 2
  local log=$box/fs-build-$name.log t=$SECONDS
  (cd "$dir" && nice -n 19 "$@") >"$log" 2>&1 \
    || { tail -40 "$log"; echo "sandbox: FreeSWITCH build step '$name' failed (log: $log)" >&2; exit 1; }
  echo "sandbox:   $name: $((SECONDS - t)) s"
}

# build_lib TARBALL: sofia-sip and spandsp, into $deps (skipped when already installed there).
build_lib() {
  local tar=$1 name=${1%.tar.xz}
  [ -f "$deps/.installed-$name" ] && return 0
  echo "sandbox: building $name"
  rm -rf "${build:?}/$name"
  tar -xJf "$src/$tar" -C "$build"
  step "$name-bootstrap" "$build/$name" ./bootstrap.sh
  step "$name-configure" "$build/$name" ./configure --prefix="$deps"
  step "$name-make" "$build/$name" make -j2
  step "$name-install" "$build/$name" make install
  touch "$deps/.installed-$name"
  rm -rf "${build:?}/$name"
}

echo "sandbox: building FreeSWITCH 1.10.12 into $prefix (about 5 minutes)"
mkdir -p "$build" "$deps"
build_lib "$sofia_tar"
build_lib "$spandsp_tar"

# FreeSWITCH is configured for its final prefix: a half-installed one is started afresh.
rm -rf "${prefix:?}" "${build:?}/freeswitch-1.10.12"
tar -xJf "$src/$fs_tar" -C "$build"
fsb=$build/freeswitch-1.10.12
printf '%s\n' "$modules" >"$fsb/modules.conf"
export PKG_CONFIG_PATH=$deps/lib/pkgconfig
# The explicit RUNPATH keeps the binaries independent of LD_LIBRARY_PATH even where libtool
# would not add it.
export LDFLAGS="-Wl,-rpath,$deps/lib -Wl,-rpath,$prefix/lib"
echo "sandbox: building freeswitch-1.10.12"
step freeswitch-bootstrap "$fsb" ./bootstrap.sh -j
# --disable-libvpx: otherwise make wants yasm/nasm.
step freeswitch-configure "$fsb" ./configure --prefix="$prefix" --disable-fhs --disable-libvpx --disable-libyuv
step freeswitch-make "$fsb" make -j2
step freeswitch-install "$fsb" make install

"$prefix/bin/freeswitch" -version >"$box/fs-build-version.log" 2>&1 \
  || { cat "$box/fs-build-version.log"; echo "sandbox: the installed freeswitch does not start" >&2; exit 1; }
for m in $modules; do
  [ -f "$prefix/mod/${m#*/}.so" ] || { echo "sandbox: module ${m#*/} was not installed" >&2; exit 1; }
done
rm -rf "${build:?}"
{ grep -o 'FreeSWITCH version: .*' "$box/fs-build-version.log" || head -1 "$box/fs-build-version.log"; } | head -1 >"$stamp"
echo "sandbox: FreeSWITCH built in $((SECONDS - start)) s ($(du -sh "$prefix" | cut -f1) + $(du -sh "$deps" | cut -f1) deps)"
echo "sandbox: FreeSWITCH ready at $prefix ($(cat "$stamp"))"
