#!/usr/bin/env bash
# Table I in miniature with seeds, the equal-parameter fronts, and the ideas tried to improve MINR
# (RESULTS.md, "Comparisons with seeds"). Every command resumes from its --out, so an interrupted
# run of this script continues where it stopped.
#
#   bash benchmarks/comparisons.sh [OUT_DIR] [PART...]      (DATA=path/to/shared/data to override)
#   PART: table1-kodak table1-imagenet40 front-kodak front-kodak-lr front-imagenet40 ideas-kodak ideas-imagenet40
#         (default: all)
#
# Kodak kodim01-04 at 128 px on the longer side and 40 ImageNet images (the first 40 of
# imagenet100/, sorted by name) at 96 px; 5 layers, 600 steps, SIREN at its default lr, seeds
# 0,1,2. On the 2-core CPU machine, two or three parts at once with one thread each
# (OMP_NUM_THREADS=1), they took: table1-kodak 29 min, table1-imagenet40 29 min, front-kodak
# 22 min, front-kodak-lr 39 min, ideas-kodak 40 min, ideas-imagenet40 51 min; front-imagenet40
# over 100 min (it was stopped after one seed of its 200k MINR point; rerun to finish it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${DATA:-$here/../../shared/data}"
out="${1:-benchmarks/out}"
shift || true
if [ $# -eq 0 ]; then set -- table1-kodak table1-imagenet40 front-kodak front-kodak-lr front-imagenet40 ideas-kodak ideas-imagenet40; fi
export INRKIT_PLOTS=0
kodak=(); for i in 1 2 3 4; do kodak+=(--data "$data/kodak/kodim0$i.png"); done
imagenet=(); for f in $(ls "$data"/imagenet100/*.JPEG | head -40); do imagenet+=(--data "$f"); done
k=(--layers 5 --steps 600 --set signal.max_side=128 --no-progress --seeds 0,1,2)
m=(--layers 5 --steps 600 --set signal.max_side=96 --no-progress --seeds 0,1,2)

for part in "$@"; do
  case "$part" in
    table1-kodak)
      inrkit compare "${kodak[@]}" "${k[@]}" --width 40 --reference separate --out "$out/table1-kodak" \
        --sharing separate,minr,row,column,grid,id,coinpp ;;
    table1-imagenet40)
      inrkit compare "${imagenet[@]}" "${m[@]}" --width 40 --reference separate --out "$out/table1-imagenet40" \
        --sharing separate,minr ;;
    front-kodak)
      inrkit front "${kodak[@]}" "${k[@]}" --sharing separate,minr --params 5k,10k,20k,40k --plots \
        --out "$out/front-kodak" ;;
    front-kodak-lr)  # the same front with both methods at lr 1e-3 (better than 5e-4 for both at width 40)
      inrkit front "${kodak[@]}" "${k[@]}" --lr 1e-3 --sharing separate,minr --params 5k,10k,20k,40k --plots \
        --out "$out/front-kodak-lr1e-3" ;;
    front-imagenet40)  # the same budgets per image as 5k-20k for four
      inrkit front "${imagenet[@]}" "${m[@]}" --sharing separate,minr --params 50k,100k,200k --plots \
        --out "$out/front-imagenet40" ;;
    ideas-kodak)
      inrkit sweep "${kodak[@]}" "${k[@]}" --width 40 --sharing minr --grid train.shared_lr_scale=1,0.5,2,4 \
        --out "$out/sweep-kodak-sharedlr"
      inrkit sweep "${kodak[@]}" "${k[@]}" --width 40 --sharing minr --grid lr=5e-4,2.5e-4,1e-3,2e-3 \
        --out "$out/sweep-kodak-lr-minr"
      inrkit sweep "${kodak[@]}" "${k[@]}" --width 40 --sharing separate --grid lr=5e-4,2.5e-4,1e-3,2e-3 \
        --out "$out/sweep-kodak-lr-separate"
      inrkit compare "${kodak[@]}" "${k[@]}" --width 40 --sharing separate --out "$out/kodak-finer-minr" \
        --variant "minr finer:sharing.name=minr,activation.name=finer" ;;
    ideas-imagenet40)  # the Kodak winner (lr) on the second data set, for both methods; adds rows to table1-imagenet40
      inrkit compare "${imagenet[@]}" "${m[@]}" --width 40 --reference separate --out "$out/table1-imagenet40" \
        --sharing separate,minr --variant "minr lr=1e-3:sharing.name=minr,train.lr=1e-3" \
        --variant "separate lr=1e-3:sharing.name=separate,train.lr=1e-3" ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
