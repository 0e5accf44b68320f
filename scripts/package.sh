#!/usr/bin/env bash
# Builds the release packages, the way admins install PBX modules:
#   asterisk-callconsent_<version>_amd64.deb   res_callconsent for the sandbox's Debian Asterisk 22:
#       the module, its XML documentation, the prompts, /etc/asterisk/callconsent.conf (a conffile),
#       the example dialplans in /usr/share/doc/asterisk-callconsent/examples/; it pre-depends on
#       the asterisk-abi-<sum> of the headers it was built with (AST_BUILDOPT_SUM, as Debian's own
#       dh_asterisk reads it), checked against the sandbox's asterisk package, which provides it
#   callconsent-tools_<version>_amd64.deb      the DPO's tool and its man page (help2man)
#   freeswitch-callconsent_<version>_amd64.tar.gz   mod_callconsent with its own install.sh
#       (FreeSWITCH has no Debian package here)
#
#   scripts/package.sh [--version X] [--out DIR] [--no-build] [--lint]
#     --version X   the packages' version (default: the workspace version of Cargo.toml; also
#                   CALLCONSENT_VERSION), e.g. a higher one to test an upgrade
#     --out DIR     where the packages go (default target/debian)
#     --no-build    package what target/release holds instead of running cargo build --release
#     --lint        then check both .deb files with the sandbox's lintian (Debian sid's, the
#                   Debian they are for); exit 1 on any error
#   ASTERISK_INCLUDE_DIR   the headers to build against (default: the sandbox's, .sandbox/sid/usr/include)
#
# dpkg-deb with the control files kept in packaging/ (not cargo-deb): the maintainer scripts,
# the debconf template and the conffile are the heart of these packages and are plain Debian
# files an admin can read; cargo-deb would only have generated the control file from Cargo.toml
# metadata, and knows neither the Asterisk ABI nor the prompts spoken from prompts/.
set -euo pipefail
umask 022
here=$(cd "$(dirname "$0")/.." && pwd)
version=${CALLCONSENT_VERSION:-}
out=$here/target/debian
build=yes
lint=no
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version=${2:?--version needs a version}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --no-build) build=no; shift ;;
    --lint) lint=yes; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "package: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
fail() { echo "package: $*" >&2; exit 1; }

[ -n "$version" ] || version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' "$here/Cargo.toml")
# A native package's version: no Debian revision (no '-').
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || fail "version '$version' is not a native Debian version (digits first, then letters, digits, . + ~)"
for tool in dpkg-deb dpkg-query dpkg-shlibdeps help2man strip gzip; do
  command -v "$tool" >/dev/null || fail "$tool is missing (scripts/sandbox.sh installs what packaging needs)"
done

sid=${CALLCONSENT_SANDBOX:-$here/.sandbox}/sid
inc=${ASTERISK_INCLUDE_DIR:-$sid/usr/include}
inc=$(cd "$inc" 2>/dev/null && pwd) || fail "no Asterisk headers at $inc (run scripts/sandbox.sh, or set ASTERISK_INCLUDE_DIR)"
opts=$inc/asterisk/buildopts.h
[ -f "$opts" ] || fail "no $opts: these are not Asterisk's headers (asterisk-dev)"

# ---- The Asterisk ABI: what the headers say, and which installed package provides it --------
abi=$(sed -n 's/^#define[[:space:]]*AST_BUILDOPT_SUM[[:space:]]*"\([0-9a-f]*\)".*/\1/p' "$opts")
[ -n "$abi" ] || fail "$opts defines no AST_BUILDOPT_SUM"
tree=${inc%/usr/include}
admin=$tree/var/lib/dpkg
[ -f "$admin/status" ] || fail "the headers in $inc are not part of a Debian tree ($admin/status is missing): the ABI must come from its asterisk package"
q() { dpkg-query --admindir="$admin" "$@"; }
owner=$(q -S /usr/include/asterisk/buildopts.h 2>/dev/null | cut -d: -f1) || true
[ -n "$owner" ] || fail "no package of ${tree:-/} owns /usr/include/asterisk/buildopts.h"
dev_version=$(q -W -f='${Version}' "$owner")
provider=$(q -W -f='${db:Status-Abbrev}|${Package}|${Version}|${Provides}\n' \
  | awk -F'|' -v abi="asterisk-abi-$abi" '$1 ~ /^ii/ { n = split($4, p, /, */); for (i = 1; i <= n; i++) if (p[i] == abi) print $2 "|" $3 }')
[ -n "$provider" ] || fail "no installed package of ${tree:-/} provides asterisk-abi-$abi (the ABI of $opts); its asterisk provides: $(q -W -f='${Provides}' asterisk 2>/dev/null)"
[ "${provider#*|}" = "$dev_version" ] \
  || fail "the headers are $owner $dev_version, but asterisk-abi-$abi is provided by ${provider%|*} ${provider#*|}"
moddir=$(q -L asterisk-modules | sed -n 's|/app_mixmonitor\.so$||p' | head -1)
[ -n "$moddir" ] || fail "asterisk-modules of ${tree:-/} has no app_mixmonitor.so: where are Asterisk's modules?"
echo "package: Asterisk ${provider#*|} (${provider%|*}), asterisk-abi-$abi, modules in $moddir"

# ---- Build, and check that the module is the one of these headers ----------------------------
rel=$here/target/release
if [ "$build" = yes ]; then
  # build.rs finds the same headers by itself (ASTERISK_INCLUDE_DIR, else the sandbox's); setting
  # the variable only here would make every later plain `cargo build` rebuild the module.
  cargo build --release --manifest-path "$here/Cargo.toml"
fi
for f in libcallconsent.so callconsent libmod_callconsent.so; do
  [ -f "$rel/$f" ] || fail "$rel/$f is missing (cargo build --release, or drop --no-build)"
done
# AST_MODULE_INFO stores AST_BUILDOPT_SUM in the module: Asterisk refuses a module whose sum differs.
grep -qaF "$abi" "$rel/libcallconsent.so" \
  || fail "$rel/libcallconsent.so was not built with the headers of asterisk-abi-$abi (build with ASTERISK_INCLUDE_DIR=$inc)"
if [ -e "$rel/callconsent-console" ] && [ ! -f "$here/packaging/callconsent-tools/callconsent-console.service" ]; then
  fail "the console exists ($rel/callconsent-console): write its systemd unit, packaging/callconsent-tools/callconsent-console.service, to package it"
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/callconsent-package.XXXXXX")
# The prompts are spoken by the sandbox's espeak-ng and sox (the versions the tests hear), else the
# host's; the work directory is inside the sandbox so that its tools see it.
if [ -x "$sid/usr/bin/espeak-ng" ] && [ -x "$sid/usr/bin/sox" ]; then
  speaker=$sid speak=$(mktemp -d "$sid/var/tmp/cc-package.XXXXXX")
elif command -v espeak-ng >/dev/null && command -v sox >/dev/null; then
  speaker= speak=$(mktemp -d "${TMPDIR:-/tmp}/cc-package.XXXXXX")
else
  fail "cannot speak the prompts: no espeak-ng and sox in $sid (scripts/sandbox.sh) nor on this machine"
fi
trap 'rm -rf "$stage" "$speak"' EXIT
if [ -n "$speaker" ]; then seen=/${speak#"$speaker"/}; else seen=$speak; fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)}

# ---- The prompts, spoken once for all three packages -----------------------------------------
for dir in "$here"/prompts/*/; do
  lang=$(basename "$dir")
  mkdir -p "$speak/$lang"
  cp "$dir"*.txt "$speak/$lang/"
  ${speaker:+chroot "$speaker"} sh -euc '
    cd "$1"
    for txt in *.txt; do
      name=${txt%.txt}
      espeak-ng -v "$2" -s 150 -f "$txt" -w "$name.22k.wav"
      sox "$name.22k.wav" -r 8000 -c 1 -b 16 "$name.wav"
      rm -f "$name.22k.wav" "$txt"
    done' _ "$seen/$lang" "$lang"
done
[ -f "$speak/en/notice.wav" ] || fail "the English notice was not spoken"

# What a stage directory needs in every package.
docs() { # PKG STAGE_DIR CRATE...
  local d=$2/usr/share/doc/$1
  install -d "$d"
  copyright "${@:3}" >"$d/copyright"
  changelog | gzip -9n >"$d/changelog.gz"
  chmod 0644 "$d/copyright" "$d/changelog.gz"
}
# packaging/copyright, with the Rust crates linked into the binaries and their licenses.
copyright() { # CRATE...
  local args=() c list
  for c in "$@"; do args+=(-p "$c"); done
  list=$(cd "$here" && cargo tree --offline -e normal --prefix none --format '{p}|{l}' "${args[@]}" 2>/dev/null \
    | sed 's/ ([^)]*)$//' | grep -v '^callconsent' | sort -u | awk -F'|' '{ print "  " $1 ": " ($2 == "" ? "see the crate" : $2) }')
  [ -n "$list" ] || fail "cargo tree --offline listed no crates for $*"
  awk -v list="$list" '$0 == "@CRATES@" { print list; next } { print }' "$here/packaging/copyright"
}
# packaging/changelog, with an entry of this build on top when the version is not its newest.
changelog() {
  local top
  top=$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' "$here/packaging/changelog")
  if [ "$top" != "$version" ]; then
    printf 'callconsent (%s) unstable; urgency=medium\n\n  * Built by scripts/package.sh --version %s from %s.\n\n -- %s  %s\n\n' \
      "$version" "$version" "$(git -C "$here" describe --always --dirty 2>/dev/null || echo 'the source tree')" \
      "$(sed -n 's/^ -- \(.*>\)  .*/\1/p' "$here/packaging/changelog" | head -1)" \
      "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
  fi
  cat "$here/packaging/changelog"
}
# The control file from packaging/<pkg>/control, the md5sums, then the .deb.
deb() { # PKG STAGE_DIR SHLIBS_DEPENDS
  local pkg=$1 root=$2 size
  install -d -m 0755 "$root/DEBIAN"
  size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$size/" -e "s/@ASTERISK_ABI@/asterisk-abi-$abi/" \
      -e "s/@SHLIBS_DEPENDS@/$3/" "$here/packaging/$pkg/control" >"$root/DEBIAN/control"
  (cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
  chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
  dpkg-deb --root-owner-group -Zxz --build "$root" "$out/${pkg}_${version}_amd64.deb" >/dev/null
  echo "package: $out/${pkg}_${version}_amd64.deb"
}
# The library dependencies of the binaries, as Debian computes them.
shlibs() { # FILE... (in $stage/debian/<pkg>/, where dpkg-shlibdeps expects a package's files)
  printf 'Source: callconsent\n\nPackage: asterisk-callconsent\nArchitecture: amd64\n\nPackage: callconsent-tools\nArchitecture: amd64\n' >"$stage/debian/control"
  (cd "$stage" && dpkg-shlibdeps -O "$@") | sed -n 's/^shlibs:Depends=//p'
}
strip_to() { # SRC DEST MODE (as dh_strip: the symbol table goes, the dynamic symbols stay)
  install -D -m "$3" "$1" "$2"
  strip --remove-section=.comment --remove-section=.note --strip-unneeded "$2"
}

# ---- asterisk-callconsent --------------------------------------------------------------------
a=$stage/debian/asterisk-callconsent
strip_to "$rel/libcallconsent.so" "$a$moddir/res_callconsent.so" 0644
install -D -m 0644 "$here/doc/res_callconsent-en_US.xml" "$a/usr/share/asterisk/documentation/thirdparty/res_callconsent-en_US.xml"
# English where Asterisk looks after <language>/ for every language; the others in a directory of
# their own, linked into that language's sounds directory by postinst (see there).
for lang_dir in "$speak"/*/; do
  lang=$(basename "$lang_dir")
  dest=$a/usr/share/asterisk/sounds/callconsent; [ "$lang" = en ] || dest=$dest/$lang
  install -d "$dest"
  install -m 0644 "$lang_dir"*.wav "$dest/"
done
install -D -m 0644 "$here/dialplan/callconsent.conf.sample" "$a/etc/asterisk/callconsent.conf"
ex=$a/usr/share/doc/asterisk-callconsent/examples
install -D -m 0644 "$here/dialplan/extensions.conf.sample" "$ex/extensions.conf.sample"
install -D -m 0644 "$here/dialplan/features.conf.sample" "$ex/features.conf.sample"
install -D -m 0644 "$here/dialplan/freepbx/extensions_custom.conf" "$ex/freepbx/extensions_custom.conf"
docs asterisk-callconsent "$a" callconsent
gzip -9n <"$here/README.md" >"$a/usr/share/doc/asterisk-callconsent/README.md.gz"
chmod 0644 "$a/usr/share/doc/asterisk-callconsent/README.md.gz"
install -d -m 0755 "$a/DEBIAN"
for f in postinst postrm config; do install -m 0755 "$here/packaging/asterisk-callconsent/$f" "$a/DEBIAN/$f"; done
for f in templates triggers; do install -m 0644 "$here/packaging/asterisk-callconsent/$f" "$a/DEBIAN/$f"; done
echo /etc/asterisk/callconsent.conf >"$a/DEBIAN/conffiles"
chmod 0644 "$a/DEBIAN/conffiles"
deb asterisk-callconsent "$a" "$(shlibs "$a$moddir/res_callconsent.so")"

# ---- callconsent-tools -----------------------------------------------------------------------
t=$stage/debian/callconsent-tools
install -d -m 0755 "$t/DEBIAN"
strip_to "$rel/callconsent" "$t/usr/bin/callconsent" 0755
man=$stage/callconsent.1
# help2man gives the synopsis, the command list, the options and the exit codes; each command's
# own --help (and its subcommands') follows in COMMANDS, so the page says all --help says.
{
  echo "[COMMANDS]"
  commands() { # the subcommands listed in `callconsent $* --help`
    "$rel/callconsent" "$@" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p' | grep -vx help || true
  }
  page() {
    local subs sub
    subs=$(commands "$@")
    # A command with subcommands gets its own section too when it runs by itself (console).
    if [ -z "$subs" ] || "$rel/callconsent" "$@" --help | grep -q "^Usage: callconsent $* \[OPTIONS\]$"; then
      echo ".SS \"callconsent $*\""
      echo ".nf"
      "$rel/callconsent" "$@" --help | sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"
      echo ".fi"
    fi
    for sub in $subs; do page "$@" "$sub"; done
  }
  for c in $(commands); do page "$c"; done
  cat "$here/packaging/callconsent-tools/callconsent.h2m"
} >"$stage/callconsent.h2m"
help2man --no-info --section=1 --name="the DPO's tool for callconsent call recordings" \
  --include="$stage/callconsent.h2m" --output="$man" "$rel/callconsent"
install -d "$t/usr/share/man/man1"
gzip -9n <"$man" >"$t/usr/share/man/man1/callconsent.1.gz"
chmod 0644 "$t/usr/share/man/man1/callconsent.1.gz"
# The console's systemd unit (not enabled by the package: passwords come first).
install -D -m 0644 "$here/packaging/callconsent-tools/callconsent-console.service" "$t/usr/lib/systemd/system/callconsent-console.service"
docs callconsent-tools "$t" callconsent-tool
deb callconsent-tools "$t" "$(shlibs "$t/usr/bin/callconsent")"

# ---- freeswitch-callconsent (a tarball with its install script) ------------------------------
name=freeswitch-callconsent-$version
f=$stage/$name
strip_to "$rel/libmod_callconsent.so" "$f/mod_callconsent.so" 0755
install -D -m 0755 "$here/packaging/freeswitch/install.sh" "$f/install.sh"
install -D -m 0644 "$here/packaging/freeswitch/README" "$f/README"
install -D -m 0644 "$here/dialplan/freeswitch/callconsent.conf.xml" "$f/conf/callconsent.conf.xml"
install -D -m 0644 "$here/dialplan/freeswitch/callconsent.xml" "$f/conf/callconsent.xml"
for lang_dir in "$speak"/*/; do
  lang=$(basename "$lang_dir")
  dest=$f/sounds/callconsent; [ "$lang" = en ] || dest=$dest/$lang
  install -d "$dest"
  install -m 0644 "$lang_dir"*.wav "$dest/"
done
install -D -m 0755 "$t/usr/bin/callconsent" "$f/bin/callconsent"
install -D -m 0644 "$man" "$f/man/callconsent.1"
copyright callconsent-freeswitch callconsent-tool >"$f/COPYRIGHT"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  -C "$stage" -czf "$out/freeswitch-callconsent_${version}_amd64.tar.gz" "$name"
echo "package: $out/freeswitch-callconsent_${version}_amd64.tar.gz"

# ---- lintian, Debian sid's, in the sandbox (proc only in a private mount namespace) ----------
if [ "$lint" = yes ]; then
  [ -x "$sid/usr/bin/lintian" ] || fail "no lintian in $sid (run scripts/sandbox.sh)"
  lintdir=$(mktemp -d "$sid/var/tmp/cc-lint.XXXXXX")
  trap 'rm -rf "$stage" "$speak" "$lintdir"' EXIT
  cp "$out/asterisk-callconsent_${version}_amd64.deb" "$out/callconsent-tools_${version}_amd64.deb" "$lintdir/"
  chmod 0755 "$lintdir"; chmod 0644 "$lintdir"/*.deb
  # As nobody: lintian reads packages, it has no business running as root.
  unshare -m --propagation private -- sh -c '
    mount -t proc proc "$1/proc"
    HOME=/tmp chroot --userspec=65534:65534 "$1" sh -c "cd /tmp && lintian --fail-on error --tag-display-limit 0 \"\$0\"/*.deb" "$2"' \
    _ "$sid" "/${lintdir#"$sid"/}" || fail "lintian found errors"
  echo "package: lintian: no errors"
fi
