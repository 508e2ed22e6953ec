#!/usr/bin/env bash
# One command for a machine with a GPU: LoRA SFT at the Qwen2.5-0.5B shape (plain TRL, TRL + Liger,
# posttrain), GRPO with vLLM colocated (plain TRL vs posttrain), and a short DPO; then one table of
# tokens/s, MFU and peak memory. Random-init weights of the real shape (no hub needed). Budget: each
# check runs under `timeout`, 7.5 minutes in all.
#
#   scripts/gpu_check.sh            # on the GPU machine (trl, datasets, vllm, liger-kernel installed)
#   scripts/gpu_check.sh --dry-run  # on a CPU: the same three checks at a tiny shape, side by side, each
#                                   # bench's configurations in its own process (--in-process), in ~30 s
#                                   # (tests/grpo/test_gpu_check.py runs it, so it does not rot)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python}
OUT=${GPU_CHECK_OUT:-$(mktemp -d -t gpu_check_XXXX)}
mkdir -p "$OUT"

if [ "${1:-}" = "--dry-run" ]; then
  SHAPE=tiny
  SFT=(--configs a,c --rounds 1 --steps 2 --warmup 1 --batch-size 2 --max-length 64 --mean-tokens 40 --in-process --threads 1)
  GRPO=(--rounds 1 --steps 2 --warmup 1 --batch-size 4 --num-generations 2 --max-completion-length 8 --in-process --threads 1)
  DPO=(--steps 2 --warmup 1 --batch-size 2 --max-length 64)
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  LIMITS=(600 600 600)
else
  $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh: no GPU here (use --dry-run)')"
  SHAPE=qwen2.5-0.5b
  SFT=(--configs a,b,c --rounds 1 --steps 20 --warmup 4 --batch-size 8 --max-length 2048 --mean-tokens 600)
  GRPO=(--rounds 1 --steps 8 --warmup 2 --batch-size 32 --num-generations 8 --max-completion-length 256 --vllm)
  DPO=(--steps 12 --warmup 2 --batch-size 8 --max-length 1024)
  LIMITS=(200 180 70)
fi

CHECKS=(
  "timeout ${LIMITS[0]} $PY scripts/bench_sft.py --shape $SHAPE ${SFT[*]} --json $OUT/sft.json"
  "timeout ${LIMITS[1]} $PY scripts/bench_grpo.py --shape $SHAPE ${GRPO[*]} --json $OUT/grpo.json"
  "timeout ${LIMITS[2]} $PY scripts/bench_dpo.py --shape $SHAPE ${DPO[*]} --json $OUT/dpo.json"
)
if [ "$SHAPE" = tiny ]; then
  # Dry run: the three checks at once, one thread each (it tests the commands, not the speed); each one's
  # output after it ends, and the first failure fails the script.
  pids=()
  for i in "${!CHECKS[@]}"; do
    ${CHECKS[$i]} >"$OUT/check$i.log" 2>&1 &
    pids+=($!)
  done
  status=0
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { status=$?; echo "check failed: ${CHECKS[$i]}"; }
    cat "$OUT/check$i.log"
  done
  [ "$status" = 0 ] || exit "$status"
else
  for check in "${CHECKS[@]}"; do $check; done  # one at a time: the GPU measurements must not overlap
fi
$PY -c "import sys; sys.path.insert(0, 'scripts'); import benchlib; print(benchlib.summary_table(sys.argv[1:]))" \
  "$OUT/sft.json" "$OUT/grpo.json" "$OUT/dpo.json"
