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
#
# With --freeswitch, installs mod_callconsent into an existing FreeSWITCH 1.10 instead, found by
# `pkg-config freeswitch` (PKG_CONFIG_PATH is honoured; with --root, the .pc files of DIR) or
# given as --fs-prefix PREFIX (a --disable-fhs tree: bin/freeswitch, mod/, conf/, sounds/): the
# module as mod_callconsent.so (temporary file + mv), autoload_configs/callconsent.conf.xml (an
# existing one is kept; the new sample goes beside it), dialplan/callconsent.xml.sample (never
# enabled by itself) and the prompts as 8 kHz mono WAV in <sounds>/callconsent/ (French ones in
# callconsent/fr/; studio recordings with the same names are kept). Then: load mod_callconsent.
#   scripts/install.sh --freeswitch [--root DIR | --fs-prefix PREFIX] [--module FILE] [--uninstall]
#   (--uninstall removes the module only; --fs-prefix implies --freeswitch)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
root=/
action=install
module=
pbx=asterisk
fs_prefix=
root_given=no
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=${2:?--root needs a directory}; root_given=yes; shift 2 ;;
    --uninstall) action=uninstall; shift ;;
    --module) module=${2:?--module needs a file}; shift 2 ;;
    --freeswitch) pbx=freeswitch; shift ;;
    --fs-prefix) fs_prefix=${2:?--fs-prefix needs a directory}; pbx=freeswitch; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "install: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -d "$root" ] || { echo "install: $root is not a directory" >&2; exit 1; }
root=$(cd "$root" && pwd); root=${root%/}

# ---- FreeSWITCH 1.10 (--freeswitch) ---------------------------------------------------------
# Paths are as FreeSWITCH sees them ($moddir...); files are written at $root$moddir (root is
# empty without --root).
fs_main() {
  local bin moddir confdir soundsdir incdir version number where group
  if [ -n "$fs_prefix" ]; then
    [ "$root_given" = no ] || { echo "install: --fs-prefix takes a host path; do not combine it with --root" >&2; exit 2; }
    [ -d "$fs_prefix" ] || { echo "install: $fs_prefix is not a directory" >&2; exit 1; }
    fs_prefix=$(cd "$fs_prefix" && pwd)
    bin=$fs_prefix/bin/freeswitch moddir=$fs_prefix/mod confdir=$fs_prefix/conf
    soundsdir=$fs_prefix/sounds incdir=$fs_prefix/include/freeswitch
    [ -x "$bin" ] && [ -d "$confdir" ] \
      || { echo "install: no FreeSWITCH at $fs_prefix: $bin or $confdir is missing" >&2; exit 1; }
    where=$fs_prefix
  else
    if [ -n "$root" ]; then
      # Only the tree's .pc files: PKG_CONFIG_PATH and pkg-config's own path, inside DIR.
      local dirs= d
      for d in $(echo "${PKG_CONFIG_PATH:-}:$(pkg-config --variable pc_path pkg-config 2>/dev/null):/usr/local/freeswitch/lib/pkgconfig" | tr ':' ' '); do
        dirs=$dirs${dirs:+:}$root$d
      done
      export PKG_CONFIG_LIBDIR=$dirs PKG_CONFIG_PATH=
    fi
    pkg-config --exists freeswitch 2>/dev/null || {
      echo "install: no FreeSWITCH found in ${root:-/}: pkg-config freeswitch fails (set PKG_CONFIG_PATH to the directory of freeswitch.pc, or give --fs-prefix PREFIX)" >&2
      exit 1
    }
    moddir=$(pkg-config --variable=modulesdir freeswitch)
    confdir=$(pkg-config --variable=confdir freeswitch)
    soundsdir=$(pkg-config --variable=soundsdir freeswitch)
    incdir=$(pkg-config --variable=includedir freeswitch)
    bin=$(pkg-config --variable=bindir freeswitch)/freeswitch
    [ -n "$moddir" ] && [ -n "$confdir" ] && [ -n "$soundsdir" ] \
      || { echo "install: freeswitch.pc names no modulesdir, confdir or soundsdir" >&2; exit 1; }
    if [ -z "$root" ] && [ ! -x "$bin" ]; then bin=$(command -v freeswitch || echo "$bin"); fi
    where=${root:-/}
  fi

  if [ "$action" = uninstall ]; then
    rm -f "$root$moddir/mod_callconsent.so"
    echo "install: removed mod_callconsent.so from $moddir (a loaded copy stays until: fs_cli -x 'unload mod_callconsent')"
    echo "install: kept $confdir/autoload_configs/callconsent.conf.xml, the prompts, the recordings, the audit log and the state (secret, caps) in the db directory"
    exit 0
  fi

  if [ -z "$root" ]; then version=$("$bin" -version 2>/dev/null || true); else version=$(chroot "$root" "$bin" -version 2>/dev/null || true); fi
  number=$(echo "$version" | sed -n 's/^FreeSWITCH version: \([0-9][0-9.]*\).*/\1/p' | head -1)
  [ -n "$number" ] || { echo "install: no FreeSWITCH binary answers at $bin in $where (freeswitch -version)" >&2; exit 1; }
  case "$number" in
    1.10|1.10.*) ;;
    *) echo "install: FreeSWITCH $number is not supported; mod_callconsent needs FreeSWITCH 1.10" >&2; exit 1 ;;
  esac

  # What speaks the prompts, decided before anything is written.
  local speaker= need=0 dir lang txt name out
  sid=${CALLCONSENT_SANDBOX:-$here/.sandbox}/sid
  for dir in "$here"/prompts/*/; do
    lang=$(basename "$dir")
    out=$root$soundsdir/callconsent; [ "$lang" = en ] || out=$out/$lang
    for txt in "$dir"*.txt; do
      name=$(basename "$txt" .txt)
      if [ ! -e "$out/$name.wav" ] || [ -e "$out/.$name.generated" ]; then need=1; fi
    done
  done
  if [ "$need" = 1 ]; then
    if command -v espeak-ng >/dev/null && command -v sox >/dev/null; then speaker=host
    elif [ -x "$sid/usr/bin/espeak-ng" ] && [ -x "$sid/usr/bin/sox" ]; then speaker="in $sid"
    else
      echo "install: cannot speak the prompts: no espeak-ng and sox on this machine, nor in $sid (install espeak-ng and sox, or put studio recordings in $soundsdir/callconsent/)" >&2
      exit 1
    fi
  fi

  if [ -z "$module" ]; then
    [ -f "$root$incdir/switch.h" ] \
      || { echo "install: FreeSWITCH's headers are missing: no switch.h in ${root}$incdir (install libfreeswitch-dev, or give --module FILE)" >&2; exit 1; }
    FREESWITCH_INCLUDE_DIR=$root$incdir cargo build --release --manifest-path "$here/Cargo.toml" -p callconsent-freeswitch -p callconsent-tool
    module=$here/target/release/libmod_callconsent.so
  fi
  [ -f "$module" ] || { echo "install: $module is missing" >&2; exit 1; }
  grep -qa mod_callconsent_module_interface "$module" \
    || { echo "install: $module is not mod_callconsent (no mod_callconsent_module_interface in it)" >&2; exit 1; }

  # The module: never cp over a loaded .so.
  install -d "$root$moddir"
  install -m 0755 "$module" "$root$moddir/.mod_callconsent.so.tmp"
  mv -f "$root$moddir/.mod_callconsent.so.tmp" "$root$moddir/mod_callconsent.so"
  echo "install: $moddir/mod_callconsent.so"

  # The configuration (readable by FreeSWITCH's group, like the directory it goes in).
  install -d "$root$confdir/autoload_configs" "$root$confdir/dialplan"
  group=$(stat -c %g "$root$confdir/autoload_configs")
  if [ -e "$root$confdir/autoload_configs/callconsent.conf.xml" ]; then
    install -m 0640 -g "$group" "$here/dialplan/freeswitch/callconsent.conf.xml" "$root$confdir/autoload_configs/callconsent.conf.xml.sample"
    echo "install: kept the existing $confdir/autoload_configs/callconsent.conf.xml (new sample: callconsent.conf.xml.sample)"
  else
    install -m 0640 -g "$group" "$here/dialplan/freeswitch/callconsent.conf.xml" "$root$confdir/autoload_configs/callconsent.conf.xml"
    echo "install: $confdir/autoload_configs/callconsent.conf.xml"
  fi
  # The dialplan example, as a sample only: *.xml includes never pick it up.
  install -m 0644 -g "$group" "$here/dialplan/freeswitch/callconsent.xml" "$root$confdir/dialplan/callconsent.xml.sample"
  echo "install: $confdir/dialplan/callconsent.xml.sample (copy its extensions into your dialplan)"

  # The prompts: espeak-ng, then sox to 8 kHz mono 16-bit WAV; a studio recording (a .wav with
  # no .generated marker beside it) is never overwritten.
  local spoken=0 kept=0
  ctmp=cc-fs-prompt-$$ tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"; rm -f "$sid/tmp/$ctmp".*' EXIT
  for dir in "$here"/prompts/*/; do
    lang=$(basename "$dir")
    out=$root$soundsdir/callconsent; [ "$lang" = en ] || out=$out/$lang
    install -d "$out"
    for txt in "$dir"*.txt; do
      name=$(basename "$txt" .txt)
      if [ -e "$out/$name.wav" ] && [ ! -e "$out/.$name.generated" ]; then kept=$((kept + 1)); continue; fi
      if [ "$speaker" = host ]; then
        espeak-ng -v "$lang" -s 150 -f "$txt" -w "$tmp/p.wav"
        sox "$tmp/p.wav" -r 8000 -c 1 -b 16 "$tmp/p-8k.wav"
      else
        cp "$txt" "$sid/tmp/$ctmp.txt"
        chroot "$sid" sh -euc 'espeak-ng -v "$1" -s 150 -f "$2.txt" -w "$2.wav"; sox "$2.wav" -r 8000 -c 1 -b 16 "$2.8k.wav"' _ "$lang" "/tmp/$ctmp"
        mv "$sid/tmp/$ctmp.8k.wav" "$tmp/p-8k.wav"
      fi
      install -m 0644 "$tmp/p-8k.wav" "$out/.$name.wav.tmp"
      mv -f "$out/.$name.wav.tmp" "$out/$name.wav"
      touch "$out/.$name.generated"
      spoken=$((spoken + 1))
    done
  done
  echo "install: prompts in $soundsdir/callconsent/ (French in callconsent/fr/): $spoken spoken${speaker:+ by espeak-ng ${speaker/host/on this machine}}, $kept kept as studio recordings"
  echo "install: FreeSWITCH $number ($bin${root:+ in $root}): done. Next: fs_cli -x 'load mod_callconsent' (or 'reload mod_callconsent' if it was loaded);"
  echo "install: to load it at every start, add <load module=\"mod_callconsent\"/> to autoload_configs/modules.conf.xml after mod_sofia and mod_sndfile"
  exit 0
}
[ "$pbx" = freeswitch ] && fs_main
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
  ASTERISK_INCLUDE_DIR=$root/usr/include cargo build --release --manifest-path "$here/Cargo.toml" -p callconsent -p callconsent-tool
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
