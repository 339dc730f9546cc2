#!/usr/bin/env bash
# Evaluate several models with one config and fail when any of them regressed against its baseline.
#
# usage: scripts/eval-models.sh [-c CONFIG] [-b BASELINE_DIR] [-o OUT_DIR] [-d MAX_DROP] [-u] MODEL...
#
#   MODEL    a --model value: a TorchScript file, torchvision:resnet18, digits-cnn (the embedded default)...
#   -c FILE  the config every model runs with: a file or a shipped name (default: quick)
#   -b DIR   baseline reports, one per model as DIR/NAME.json (default: baselines); a model without a
#            baseline is evaluated and reported, not compared
#   -o DIR   where the new reports go, as NAME.json and NAME.md (default: reports)
#   -d DROP  the largest accuracy drop allowed at any point, e.g. 0.02 or 2% (default: 0.02)
#   -u       after a run with no failure, copy the new reports into the baseline folder
#
# NAME is the model's file name without its extension (digits-cnn, torchvision_resnet18, ...).
# Exit status: 0 all passed; 1 a model regressed or failed a gate of the config; 2 a model could not
# be evaluated or compared. Set ADVGRAD to the command that runs advgrad (default: advgrad), e.g.
# ADVGRAD="python -m advgrad".
set -u

config=quick
baselines=baselines
out=reports
drop=0.02
update=0
while getopts "c:b:o:d:uh" opt; do
  case "$opt" in
    c) config=$OPTARG ;;
    b) baselines=$OPTARG ;;
    o) out=$OPTARG ;;
    d) drop=$OPTARG ;;
    u) update=1 ;;
    h) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "usage: $0 [-c CONFIG] [-b BASELINE_DIR] [-o OUT_DIR] [-d MAX_DROP] [-u] MODEL..." >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [ "$#" -eq 0 ]; then
  echo "usage: $0 [-c CONFIG] [-b BASELINE_DIR] [-o OUT_DIR] [-d MAX_DROP] [-u] MODEL..." >&2
  exit 2
fi
read -r -a advgrad <<< "${ADVGRAD:-advgrad}"
mkdir -p "$out" || exit 2

name_of() {  # models/net-a.pt -> net-a, torchvision:resnet18 -> torchvision_resnet18
  local name
  name=$(basename "$1")
  name=${name%.*}
  echo "${name//[:\/]/_}"
}

failed=()   # regressions and failed gates
broken=()   # evaluations or comparisons that could not run
for model in "$@"; do
  name=$(name_of "$model")
  echo "== $model -> $out/$name.json" >&2
  "${advgrad[@]}" eval --config "$config" --model "$model" --json "$out/$name.json" --markdown "$out/$name.md"
  status=$?
  if [ "$status" -eq 1 ]; then
    failed+=("$name (gate)")
  elif [ "$status" -ne 0 ]; then
    broken+=("$name (eval exit $status)")
    continue
  fi
  if [ -f "$baselines/$name.json" ]; then
    "${advgrad[@]}" compare "$baselines/$name.json" "$out/$name.json" --max-drop "$drop"
    status=$?
    if [ "$status" -eq 1 ]; then
      failed+=("$name (regressed)")
    elif [ "$status" -ne 0 ]; then
      broken+=("$name (compare exit $status)")
    fi
  else
    echo "no baseline $baselines/$name.json: not compared" >&2
  fi
done

echo "== $# models: ${#failed[@]} failed, ${#broken[@]} could not run" >&2
for item in "${failed[@]+"${failed[@]}"}"; do echo "FAILED: $item" >&2; done
for item in "${broken[@]+"${broken[@]}"}"; do echo "ERROR: $item" >&2; done
if [ "${#broken[@]}" -gt 0 ]; then
  exit 2
fi
if [ "${#failed[@]}" -gt 0 ]; then
  exit 1
fi
if [ "$update" -eq 1 ]; then
  mkdir -p "$baselines" || exit 2
  for model in "$@"; do
    name=$(name_of "$model")
    cp "$out/$name.json" "$baselines/$name.json" || exit 2
  done
  echo "baselines updated in $baselines" >&2
fi
exit 0
