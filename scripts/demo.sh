#!/usr/bin/env bash
# The demo: provisions the sandbox Asterisk, builds and loads res_callconsent with the example
# configuration from dialplan/, places two scripted calls (one kept, one where the caller presses
# 9 mid-call), then prints the audit lines, the files left (the kept call as an Ogg Opus archive
# encrypted to the DPO's age key, made here outside the PBX's directories) and the DPO tool's
# checks: the audit chain, the archive opened with the DPO's key, a logged listen. Then the same two calls on the
# sandbox FreeSWITCH with mod_callconsent (sipp caller and agent; examples/demo_fs.rs).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export CALLCONSENT_SANDBOX=${CALLCONSENT_SANDBOX:-$here/.sandbox}
root=$CALLCONSENT_SANDBOX/sid
scripts/sandbox.sh
scripts/sandbox-freeswitch.sh
scripts/prompts.sh
cargo build --release
d=/var/tmp/cc-demo
rm -rf "$root$d"; mkdir -p "$root$d"/{etc,modules,spool,run,log,db}
mods="app_mixmonitor app_dial app_playback app_senddtmf app_verbose pbx_config format_wav format_pcm codec_ulaw bridge_simple res_clioriginate"
printf '[modules]\nautoload = no\n' >"$root$d/etc/modules.conf"
for m in $mods; do
  ln -s "/usr/lib/x86_64-linux-gnu/asterisk/modules/$m.so" "$root$d/modules/$m.so"
  echo "load => $m.so" >>"$root$d/etc/modules.conf"
done
cp target/release/libcallconsent.so "$root$d/modules/.res_callconsent.so.tmp"
mv "$root$d/modules/.res_callconsent.so.tmp" "$root$d/modules/res_callconsent.so"
echo "load => res_callconsent.so" >>"$root$d/etc/modules.conf"
cat >"$root$d/etc/asterisk.conf" <<CONF
[directories]
astetcdir => $d/etc
astmoddir => $d/modules
astvarlibdir => $d/db
astdbdir => $d/db
astdatadir => /usr/share/asterisk
astspooldir => $d/spool
astrundir => $d/run
astlogdir => $d/log
[options]
verbose = 3
CONF
printf '[logfiles]\nmessages.log => notice,warning,error,verbose(3)\n' >"$root$d/etc/logger.conf"
# The DPO's key, outside the PBX's directories; the PBX gets its public half only (R11).
rm -rf "$root$d-dpo"; mkdir -p "$root$d-dpo"
recipient=$(target/release/callconsent identity new "$root$d-dpo/dpo.key")
# The example configuration (encrypted archives, a DPO in [access]), plus a demo profile that
# selects every call to show both outcomes.
{ sed "s|^\[general\]\$|[general]\nencrypt_to = $recipient\nspool_dir = $d/spool/callconsent\naudit_log = $d/log/callconsent/audit.jsonl|" dialplan/callconsent.conf.sample
  printf '\n[access]\ndpo = claire\nmax_listens_per_agent = 4\n'
  printf '\n[demo]\nnotice = callconsent/notice\nfull_notice = callconsent/full-notice\n'
  printf 'optout_confirm = callconsent/optout-confirm\nrecord_share = 100\n'
  printf 'legal_basis = demo: every call is recorded to show both outcomes\n'
} >"$root$d/etc/callconsent.conf"
cat >"$root$d/etc/extensions.conf" <<'CONF'
[demo]
exten => caller,1,Answer()
 same => n,CallConsent(demo)
 same => n,Dial(Local/agent@demo)
exten => agent,1,Answer()
 same => n,Playback(callconsent/full-notice)
 same => n,Wait(20)
; The caller who keeps the recording: listens to the notice, talks, hangs up.
exten => keeps,1,Wait(7)
 same => n,Playback(callconsent/optout-confirm)
 same => n,Wait(2)
 same => n,Hangup()
; The caller who refuses mid-call: talks, presses 9, talks on, hangs up.
exten => refuses,1,Wait(8)
 same => n,SendDTMF(9)
 same => n,Wait(3)
 same => n,Hangup()
CONF
ast() { chroot "$root" /usr/sbin/asterisk -C "$d/etc/asterisk.conf" "$@"; }
chroot "$root" /usr/sbin/asterisk -f -C "$d/etc/asterisk.conf" >"$root$d/stdout.log" 2>&1 &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do ast -rx "core waitfullybooted" >/dev/null 2>&1 && break; sleep 0.2; done
ast -rx "module show like callconsent"
echo "demo: call 1, the caller keeps the recording"
ast -rx "channel originate Local/caller@demo extension keeps@demo"
echo "demo: call 2, the caller presses 9 mid-call"
ast -rx "channel originate Local/caller@demo extension refuses@demo"
sleep 2
while [ "$(ast -rx 'core show channels count' | awk '/active channel/{print $1}')" != "0" ]; do sleep 0.5; done
# Each call's last audit line is call_settled (the refused call's late cleanups included).
for _ in $(seq 1 300); do
  [ "$(grep -c '"event":"call_settled"' "$root$d/log/callconsent/audit.jsonl" 2>/dev/null)" -ge 2 ] && break
  sleep 0.1
done
echo; echo "== audit log ($d/log/callconsent/audit.jsonl) =="
cat "$root$d/log/callconsent/audit.jsonl"
echo; echo "== files left in the spool =="
find "$root$d/spool" -type f -printf '%p  %s bytes\n'
echo; echo "== the DPO's checks =="
target/release/callconsent audit verify --key "$root$d/db/callconsent/secret" "$root$d/log/callconsent/audit.jsonl"
for f in $(find "$root$d/spool" -name '*.opus.age'); do
  target/release/callconsent archive verify "$f" "$root$d/log/callconsent/audit.jsonl" --identity "$root$d-dpo/dpo.key"
  # A listen as the PBX's own tool runs it (paths as the audit log names them): logged, bounded.
  cp target/release/callconsent "$root$d/callconsent"
  chroot "$root" "$d/callconsent" listen "$(basename "$f")" --identity "$d-dpo/dpo.key" --as claire \
    --purpose "demo: quality check" --player "cat >/dev/null" --config "$d/etc/callconsent.conf" --secret "$d/db/callconsent/secret"
done
echo; echo "== the access log ($d/log/callconsent/access.jsonl) =="
cat "$root$d/log/callconsent/access.jsonl"
ast -rx "core stop now" >/dev/null 2>&1 || true
wait $pid 2>/dev/null || true
trap - EXIT

echo; echo "== FreeSWITCH 1.10 with mod_callconsent =="
cargo run --release --example demo_fs

