#!/usr/bin/env bash
# Installs mod_callconsent from this release tarball into an existing FreeSWITCH 1.10
# (FreeSWITCH has no Debian package here, so there is no .deb for it).
#
#   ./install.sh [--fs-prefix PREFIX] [--with-tool] [--uninstall]
#
# The FreeSWITCH is found by `pkg-config freeswitch` (set PKG_CONFIG_PATH to the directory of
# freeswitch.pc), or given as --fs-prefix PREFIX, a --disable-fhs tree (bin/freeswitch, mod/,
# conf/, sounds/). It refuses any FreeSWITCH other than 1.10. It installs:
#   <modulesdir>/mod_callconsent.so               by temporary file + mv, never written over
#                                                 a loaded module
#   <confdir>/autoload_configs/callconsent.conf.xml   an existing one is kept; the new sample
#                                                 goes beside it (.sample)
#   <confdir>/dialplan/callconsent.xml.sample     an example, never enabled by itself
#   <soundsdir>/callconsent/*.wav, callconsent/fr/  the prompts (8 kHz mono); a studio
#                                                 recording with the same name is kept
# --with-tool also installs the DPO's tool as /usr/local/bin/callconsent with its man page
# (on Debian, prefer the callconsent-tools package). --uninstall removes the module only:
# configuration, prompts, recordings, the audit log and the state stay.
# Then: fs_cli -x 'load mod_callconsent'.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fs_prefix=
action=install
tool=no
while [ $# -gt 0 ]; do
  case "$1" in
    --fs-prefix) fs_prefix=${2:?--fs-prefix needs a directory}; shift 2 ;;
    --with-tool) tool=yes; shift ;;
    --uninstall) action=uninstall; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "install: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -n "$fs_prefix" ]; then
  [ -d "$fs_prefix" ] || { echo "install: $fs_prefix is not a directory" >&2; exit 1; }
  fs_prefix=$(cd "$fs_prefix" && pwd)
  bin=$fs_prefix/bin/freeswitch moddir=$fs_prefix/mod confdir=$fs_prefix/conf soundsdir=$fs_prefix/sounds
  [ -x "$bin" ] && [ -d "$confdir" ] \
    || { echo "install: no FreeSWITCH at $fs_prefix: $bin or $confdir is missing" >&2; exit 1; }
else
  pkg-config --exists freeswitch 2>/dev/null || {
    echo "install: no FreeSWITCH found: pkg-config freeswitch fails (set PKG_CONFIG_PATH to the directory of freeswitch.pc, or give --fs-prefix PREFIX)" >&2
    exit 1
  }
  moddir=$(pkg-config --variable=modulesdir freeswitch)
  confdir=$(pkg-config --variable=confdir freeswitch)
  soundsdir=$(pkg-config --variable=soundsdir freeswitch)
  bin=$(pkg-config --variable=bindir freeswitch)/freeswitch
  [ -n "$moddir" ] && [ -n "$confdir" ] && [ -n "$soundsdir" ] \
    || { echo "install: freeswitch.pc names no modulesdir, confdir or soundsdir" >&2; exit 1; }
  [ -x "$bin" ] || bin=$(command -v freeswitch || echo "$bin")
fi

if [ "$action" = uninstall ]; then
  rm -f "$moddir/mod_callconsent.so"
  echo "install: removed mod_callconsent.so from $moddir (a loaded copy stays until: fs_cli -x 'unload mod_callconsent')"
  echo "install: kept $confdir/autoload_configs/callconsent.conf.xml, the prompts, the recordings, the audit log and the state (secret, caps) in the db directory"
  exit 0
fi

number=$("$bin" -version 2>/dev/null | sed -n 's/^FreeSWITCH version: \([0-9][0-9.]*\).*/\1/p' | head -1 || true)
[ -n "$number" ] || { echo "install: no FreeSWITCH binary answers at $bin (freeswitch -version)" >&2; exit 1; }
case "$number" in
  1.10|1.10.*) ;;
  *) echo "install: FreeSWITCH $number is not supported; mod_callconsent needs FreeSWITCH 1.10" >&2; exit 1 ;;
esac

# The module: never cp over a loaded .so.
install -d "$moddir"
install -m 0755 "$here/mod_callconsent.so" "$moddir/.mod_callconsent.so.tmp"
mv -f "$moddir/.mod_callconsent.so.tmp" "$moddir/mod_callconsent.so"
echo "install: $moddir/mod_callconsent.so"

# The configuration, readable by FreeSWITCH's group like the directory it goes in.
install -d "$confdir/autoload_configs" "$confdir/dialplan"
group=$(stat -c %g "$confdir/autoload_configs")
if [ -e "$confdir/autoload_configs/callconsent.conf.xml" ]; then
  install -m 0640 -g "$group" "$here/conf/callconsent.conf.xml" "$confdir/autoload_configs/callconsent.conf.xml.sample"
  echo "install: kept the existing $confdir/autoload_configs/callconsent.conf.xml (new sample: callconsent.conf.xml.sample)"
else
  install -m 0640 -g "$group" "$here/conf/callconsent.conf.xml" "$confdir/autoload_configs/callconsent.conf.xml"
  echo "install: $confdir/autoload_configs/callconsent.conf.xml"
fi
install -m 0644 -g "$group" "$here/conf/callconsent.xml" "$confdir/dialplan/callconsent.xml.sample"
echo "install: $confdir/dialplan/callconsent.xml.sample (copy its extensions into your dialplan)"

# The prompts. A .generated marker beside a file says it came from here; a file without one is
# a studio recording and stays.
spoken=0 kept=0
for src in "$here"/sounds/callconsent/*.wav "$here"/sounds/callconsent/*/*.wav; do
  [ -f "$src" ] || continue
  rel=${src#"$here/sounds/"}
  out=$soundsdir/$(dirname "$rel") name=$(basename "$src" .wav)
  install -d "$out"
  if [ -e "$out/$name.wav" ] && [ ! -e "$out/.$name.generated" ]; then kept=$((kept + 1)); continue; fi
  install -m 0644 "$src" "$out/.$name.wav.tmp"
  mv -f "$out/.$name.wav.tmp" "$out/$name.wav"
  touch "$out/.$name.generated"
  spoken=$((spoken + 1))
done
echo "install: prompts in $soundsdir/callconsent/ (French in callconsent/fr/): $spoken installed, $kept kept as studio recordings"

if [ "$tool" = yes ]; then
  install -d /usr/local/bin /usr/local/share/man/man1
  install -m 0755 "$here/bin/callconsent" /usr/local/bin/.callconsent.tmp
  mv -f /usr/local/bin/.callconsent.tmp /usr/local/bin/callconsent
  install -m 0644 "$here/man/callconsent.1" /usr/local/share/man/man1/callconsent.1
  echo "install: /usr/local/bin/callconsent (man callconsent)"
fi
echo "install: FreeSWITCH $number ($bin): done. Next: fs_cli -x 'load mod_callconsent' (or 'reload mod_callconsent' if it was loaded);"
echo "install: to load it at every start, add <load module=\"mod_callconsent\"/> to autoload_configs/modules.conf.xml after mod_sofia and mod_sndfile"
