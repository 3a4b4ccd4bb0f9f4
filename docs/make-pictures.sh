#!/usr/bin/env bash
# Regenerates the README's pictures from a fresh recording of the race (needs /dev/kvm):
# legacy for 40 rounds, manual protect (clear policy auto) for 40, then hand: nobody
# clears, so every page ever reported is reported again; at round 120 a CLEAR by hand on
# blocks 0-7 of slot 0, the first vCPU's hot set, which the harvester then keeps re-protecting.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product dirtyscope
bin=.build/release/dirtyscope
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$bin" record "$scratch/race.dsrec" --slots 8M --rounds 160 \
    --at 40:mode=manual --at 80:policy=hand --at 120:clear=0:0-7
"$bin" plot "$scratch/race.dsrec" --kind heatmap -o docs/race-heatmap.svg
"$bin" plot "$scratch/race.dsrec" --kind fp -o docs/race-fp.svg
