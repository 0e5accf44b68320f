#!/usr/bin/env bash
# Installs res_callconsent into an existing Asterisk 22, in the directories its asterisk.conf names:
# the module (temporary file + mv: never cp over a loaded .so), a commented sample
# callconsent.conf (an existing one is never overwritten), the English and French prompts
# (espeak-ng + sox from prompts/; studio recordings with the same names are kept) and the XML
# documentation Asterisk shows in its own help. Restart Asterisk (or `module load`) afterwards.
#
#   scripts/install.sh [--root DIR]               install (DIR: a tree holding the Asterisk, default /)
#   scripts/install.sh [--root DIR] --uninstall   remove the module and its documentation
#   --module FILE: install this built module instead of building one
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
root=/
action=install
module=
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=${2:?--root needs a directory}; shift 2 ;;
    --uninstall) action=uninstall; shift ;;
    --module) module=${2:?--module needs a file}; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "install: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -d "$root" ] || { echo "install: $root is not a directory" >&2; exit 1; }
root=$(cd "$root" && pwd); root=${root%/}
conf=$root/etc/asterisk/asterisk.conf
[ -f "$conf" ] || { echo "install: no Asterisk at ${root:-/}: $conf is missing" >&2; exit 1; }

# The [directories] of asterisk.conf ("astmoddir => /path").
dir_of() {
  local v
  v=$(sed -n "s/^[[:space:]]*$1[[:space:]]*=>*[[:space:]]*//p" "$conf" | head -1)
  echo "${v:-$2}"
}
moddir=$(dir_of astmoddir /usr/lib/x86_64-linux-gnu/asterisk/modules)
etcdir=$(dir_of astetcdir /etc/asterisk)
datadir=$(dir_of astdatadir /usr/share/asterisk)

if [ "$action" = uninstall ]; then
  rm -f "$root$moddir/res_callconsent.so" "$root$datadir/documentation/thirdparty/res_callconsent-en_US.xml"
  echo "install: removed res_callconsent.so and its documentation from ${root:-/}"
  echo "install: kept $etcdir/callconsent.conf, the prompts, the recordings and the audit log"
  exit 0
fi

[ -f "$root/usr/include/asterisk.h" ] \
  || { echo "install: Asterisk's headers are missing in ${root:-/}usr/include (install asterisk-dev)" >&2; exit 1; }
if [ -z "$root" ]; then version=$(asterisk -V 2>/dev/null || true); else version=$(chroot "$root" asterisk -V 2>/dev/null || true); fi
major=$(echo "$version" | sed -n 's/^Asterisk \([0-9]*\)\..*/\1/p')
[ "$major" = 22 ] || { echo "install: ${version:-no asterisk binary} is not supported; res_callconsent needs Asterisk 22" >&2; exit 1; }

if [ -z "$module" ]; then
  ASTERISK_INCLUDE_DIR=$root/usr/include cargo build --release --manifest-path "$here/Cargo.toml"
  module=$here/target/release/libcallconsent.so
fi
[ -f "$module" ] || { echo "install: $module is missing" >&2; exit 1; }
install -d "$root$moddir"
install -m 0644 "$module" "$root$moddir/.res_callconsent.so.tmp"
mv -f "$root$moddir/.res_callconsent.so.tmp" "$root$moddir/res_callconsent.so"
if [ -e "$root$etcdir/callconsent.conf" ]; then
  install -m 0640 "$here/dialplan/callconsent.conf.sample" "$root$etcdir/callconsent.conf.sample"
  echo "install: kept the existing $etcdir/callconsent.conf (new sample: callconsent.conf.sample)"
else
  install -m 0640 "$here/dialplan/callconsent.conf.sample" "$root$etcdir/callconsent.conf"
fi
"$here/scripts/prompts.sh" "${root:-/}"
install -d "$root$datadir/documentation/thirdparty"
install -m 0644 "$here/doc/res_callconsent-en_US.xml" "$root$datadir/documentation/thirdparty/res_callconsent-en_US.xml"
echo "install: $version: module in $moddir, configuration in $etcdir, documentation in $datadir/documentation/thirdparty"
echo "install: restart Asterisk (documentation is read at startup), or: asterisk -rx 'module load res_callconsent.so'"
