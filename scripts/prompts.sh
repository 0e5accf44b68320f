#!/usr/bin/env bash
# Speaks the prompts of prompts/<lang>/*.txt (espeak-ng, then sox to 8 kHz mono WAV) into
# <root>/usr/share/asterisk/sounds/<lang>/callconsent/. Studio recordings with the same names are
# never overwritten.   Usage: scripts/prompts.sh [ROOT]   (default: the sandbox tree)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
root=${1:-${CALLCONSENT_SANDBOX:-$here/.sandbox}/sid}
# The tree's sounds/en is an absolute symlink (Debian alternatives): write from inside the tree.
for dir in "$here"/prompts/*/; do
  lang=$(basename "$dir")
  for txt in "$dir"*.txt; do
    name=$(basename "$txt" .txt)
    cp "$txt" "$root/tmp/cc-prompt.txt"
    chroot "$root" sh -euc '
      out=/usr/share/asterisk/sounds/$1/callconsent; mkdir -p "$out"
      if [ -e "$out/$2.wav" ] && [ ! -e "$out/.$2.generated" ]; then exit 0; fi
      espeak-ng -v "$1" -s 150 -f /tmp/cc-prompt.txt -w /tmp/cc-prompt.wav
      sox /tmp/cc-prompt.wav -r 8000 -c 1 -b 16 /tmp/cc-prompt-8k.wav
      mv /tmp/cc-prompt-8k.wav "$out/$2.wav"; touch "$out/.$2.generated"
      rm -f /tmp/cc-prompt.wav' _ "$lang" "$name"
    rm -f "$root/tmp/cc-prompt.txt"
  done
done
echo "prompts: installed under $root/usr/share/asterisk/sounds/*/callconsent"
