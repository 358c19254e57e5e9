#!/usr/bin/env bash
# The paper's Table I (4 Kodak images) and Table III (ablations) in miniature on the CPU.
#
# Kodak kodim01-04 shrunk so the longer side is 128 px (768x512 -> 128x85), width 40 so that the
# parameters per pixel are about the paper's (MINR: 0.29 per pixel here, 0.30 at full size with
# width 256), 5 layers, 600 full-image steps, each method at its activation's default lr (SIREN 5e-4).
#
#   bash benchmarks/paper_tables.sh [OUT_DIR]        (DATA=path/to/shared/data to override)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${DATA:-$here/../../shared/data}"
out="${1:-benchmarks/out}"
kodak=()
for i in 1 2 3 4; do kodak+=(--data "$data/kodak/kodim0$i.png"); done
common=(--width 40 --layers 5 --steps 600 --set signal.max_side=128 --no-progress)

inrkit compare "${kodak[@]}" "${common[@]}" --out "$out/table1-kodak4" \
  --sharing separate,minr,row,column,grid,id,coinpp

inrkit compare "${kodak[@]}" "${common[@]}" --out "$out/table3-kodak4" \
  --variant "MINR:sharing.name=minr" \
  --variant "w/o projection layers:sharing.projection=false" \
  --variant "w/o sharing 2nd layer:sharing.shared_layers=[3,4]" \
  --variant "w/o sharing 3rd layer:sharing.shared_layers=[2,4]" \
  --variant "w/o sharing 4th layer:sharing.shared_layers=[2,3]" \
  --variant "w/o sharing 2nd & 3rd:sharing.shared_layers=[4]" \
  --variant "w/o sharing 2nd & 4th:sharing.shared_layers=[3]" \
  --variant "w/o sharing 3rd & 4th:sharing.shared_layers=[2]"

if [ "${IMAGENET40:-0}" = 1 ]; then  # Table I's 40-image half (slow: about 40x the work of one image)
  imagenet=()
  for f in $(ls "$data"/imagenet100/*.JPEG | head -40); do imagenet+=(--data "$f"); done
  inrkit compare "${imagenet[@]}" "${common[@]}" --out "$out/table1-imagenet40" \
    --sharing separate,minr,row,column,grid,id,coinpp
fi
