#!/usr/bin/env bash
# Sweep of path/parameterisation settings for the toy default (drift-only and AGM, 3 sets x 2 seeds each).
# Usage: bash experiments/agm/toy_sweep.sh OUTDIR [WORKERS]   (ran on a 16-core machine with WORKERS=15)
set -eu
out=${1:?OUTDIR}; w=${2:-2}; mkdir -p "$out"
common=(--no-ablations --seeds 2 --steps 3000 --workers "$w" --datasets moons 8gaussians checkerboard)
run() { tag=$1; shift; ${PYTHON:-python3} experiments/agm/toy.py "${common[@]}" --out "$out/sweep_$tag.json" "$@" | tail -4; }
run A_s0.5_drift
run B_s0.5_endpoint --set model.parameterisation=endpoint --set path.t_max=0.999
run C_s0.2_drift --set path.sigma=0.2
run D_s0_drift --set path.sigma=0.0
run E_s1_endpoint --set model.parameterisation=endpoint --set path.sigma=1.0 --set path.t_max=0.999
run F_s0.2_endpoint --set model.parameterisation=endpoint --set path.sigma=0.2 --set path.t_max=0.999
