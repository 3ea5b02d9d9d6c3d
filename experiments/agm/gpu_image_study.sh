#!/usr/bin/env bash
# One GPU slot of the AGM image study (issue 17, docs/agm.md "Image study"): the four arms on 32x32 digits,
# seeds taken in order until the slot is full (images.py --finish-by-s starts a run only if it should end in time),
# and, on spare CPU cores beside it, the 10k-step 2-D toy study (CUDA hidden from it; resumes from its runs file).
#   bash experiments/agm/gpu_image_study.sh TAG "SEEDS" SLOT_SECONDS      e.g.  a "0 1 2 3 4 5 6 7 8 9" 550
# Writes $OUT/agm_images_arms_TAG_{200,800}steps.json and $OUT/agm_images_arms_TAG_runs.jsonl; pool the runs files of
# several slots with images.py --from-runs (docs/agm.md gives the command). Session 6 ran it as TAG a (seeds 0-9,
# 550 s: seeds 0-1 finished) and TAG b (seeds 2 3, 340 s) on one H200 (the classifier then copied to runs/; the
# committed experiments/results/digits_clf32_v3.safetensors is the same file and now the default, CLF=...).
# Session 7 ran c (seeds 4-6, MPS=1 PAR=12, 344 s) and d (seeds 7-9): the study's 10 seeds are complete.
set -u
T0=$(date +%s)
OUT=${OUT:-runs/gpu_image_study}; mkdir -p "$OUT"
if [ -d .whl ]; then  # wheels carried to a machine without network (see ../.library/device)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=src:${PYTHONPATH:-} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
TAG=$1; SEEDS="$2"; FIN=$3
PAR=${PAR:-8}
# Without MPS the runs time-slice the GPU: 8 runs at batch 128 together trained 3,760 images/s, less than one eager
# run at batch 256 alone (4,980 images/s; experiments/results/agm_step_time_gpu_eager_b256.json): the step is launch-bound.
# MPS=1 tries NVIDIA's multi-process service so their kernels overlap; it falls back to plain sharing if the daemon
# or a CUDA client under it fails.
if [ "${MPS:-0}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
  # a daemon left running by an earlier call on a warm machine is reused (session 7's second slot quit it and ran without)
  nvidia-cuda-mps-control -d 2>/dev/null || echo "MPS daemon already running"
  if timeout 60 python3 -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
    echo "MPS on"
  else
    echo quit | nvidia-cuda-mps-control 2>/dev/null; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY; echo "MPS off"
  fi
fi
CLF=${CLF:-experiments/results/digits_clf32_v3.safetensors}  # the committed feature classifier (FD values comparable across slots)
# CPU_JOB: what the spare cores run beside the GPU runs (CUDA hidden from it; killed at the slot's end, so it must keep
# its finished work as it goes); default: the 10k-step 2-D arms study, which resumes from its runs file
CPU_JOB=${CPU_JOB:-"python3 experiments/agm/toy.py --no-ablations --arms baseline time_weight agm agm_path \
   --nfe 5 10 20 100 --datasets moons 8gaussians checkerboard unbalanced_mixture --seeds 5 --steps 10000 --workers ${TOY_WORKERS:-6} \
   --set train.device=cpu --runs-jsonl experiments/results/agm_toy_arms_10k_runs.jsonl \
   --out $OUT/agm_toy_arms_10k_full.json"}
# the CPU job is stopped when the GPU runs end (session 7's first slot idled the GPU for 220 s waiting for it)
CUDA_VISIBLE_DEVICES= setsid timeout $((FIN + 5)) nice -n 5 bash -c "$CPU_JOB" > "$OUT/cpu_job_${TAG}.log" 2>&1 &
CPU_PID=$!
timeout "$FIN" python3 experiments/agm/images.py --arms baseline time_weight agm agm_path --seeds $SEEDS --budgets 200 800 \
   --parallel $PAR --finish-by-s $((FIN - 25)) --n-samples 1000 --sample-steps 50 --classifier "$CLF" \
   --out "$OUT/agm_images_arms_${TAG}.json" \
   --override train.batch_size=128 train.ema_decay=0.98 potential.warmup_steps=50 train.log_every=50
echo "images done t=$(( $(date +%s) - T0 ))"
kill -- -"$CPU_PID" 2>/dev/null
wait
cp experiments/results/agm_toy_arms_10k_runs.jsonl "$OUT/"  # the default CPU job's runs file (others: copy in CPU_JOB)
(cd "$OUT" && tar -czf "grids_${TAG}.tgz" ./*.png 2>/dev/null && rm -f ./*.png)
echo "t=$(( $(date +%s) - T0 ))"
