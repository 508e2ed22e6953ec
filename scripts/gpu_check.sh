#!/usr/bin/env bash
# One command for a machine with a GPU: LoRA SFT at the Qwen2.5-0.5B shape (plain TRL, TRL + Liger,
# posttrain), GRPO with vLLM colocated (plain TRL vs posttrain), and a short DPO; then one table of
# tokens/s, MFU and peak memory. Random-init weights of the real shape (no hub needed). Budget: each
# check runs under `timeout`, 7.5 minutes in all.
#
#   scripts/gpu_check.sh            # on the GPU machine (trl, datasets, vllm, liger-kernel installed)
#   scripts/gpu_check.sh --dry-run  # on a CPU: the same three checks at a tiny shape, in seconds
#                                   # (tests/grpo/test_gpu_check.py runs it, so it does not rot)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python}
OUT=${GPU_CHECK_OUT:-$(mktemp -d -t gpu_check_XXXX)}
mkdir -p "$OUT"

if [ "${1:-}" = "--dry-run" ]; then
  SHAPE=tiny
  SFT=(--configs a,c --rounds 1 --steps 2 --warmup 1 --batch-size 2 --max-length 64 --mean-tokens 40)
  GRPO=(--rounds 1 --steps 2 --warmup 1 --batch-size 4 --num-generations 2 --max-completion-length 8)
  DPO=(--steps 2 --warmup 1 --batch-size 2 --max-length 128)
  LIMITS=(600 600 600)
else
  $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh: no GPU here (use --dry-run)')"
  SHAPE=qwen2.5-0.5b
  SFT=(--configs a,b,c --rounds 1 --steps 20 --warmup 4 --batch-size 8 --max-length 2048 --mean-tokens 600)
  GRPO=(--rounds 1 --steps 8 --warmup 2 --batch-size 32 --num-generations 8 --max-completion-length 256 --vllm)
  DPO=(--steps 12 --warmup 2 --batch-size 8 --max-length 1024)
  LIMITS=(200 180 70)
fi

timeout "${LIMITS[0]}" $PY scripts/bench_sft.py --shape "$SHAPE" "${SFT[@]}" --json "$OUT/sft.json"
timeout "${LIMITS[1]}" $PY scripts/bench_grpo.py --shape "$SHAPE" "${GRPO[@]}" --json "$OUT/grpo.json"
timeout "${LIMITS[2]}" $PY scripts/bench_dpo.py --shape "$SHAPE" "${DPO[@]}" --json "$OUT/dpo.json"
$PY -c "import sys; sys.path.insert(0, 'scripts'); import benchlib; print(benchlib.summary_table(sys.argv[1:]))" \
  "$OUT/sft.json" "$OUT/grpo.json" "$OUT/dpo.json"
