"""One rank of a launched evaluation: `python -m posttrain.launch.eval_worker <folder>/eval-launch/eval_job.json`.

Loads the model the orchestrator saved, in the dtype and attention
implementation it had there, evaluates this rank's share of the documents,
and on rank 0 writes the gathered result. A failing rank writes its error
to `errors/rank<N>.json` (see worker.py).
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

from posttrain.launch.job import RESULT_FILE
from posttrain.launch.worker import rank_and_world, record_failure


def evaluate_job(job_path: Path) -> dict[str, Any] | None:
    """This rank's part of the job; the result on rank 0, None on the others."""
    import torch
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM

    from posttrain.evaluation.harness import evaluate_spec
    from posttrain.models.loading import load_tokenizer
    from posttrain.stagekit.specs import EvalSpec

    job = json.loads(job_path.read_text())
    # On CPUs accelerate sets up gloo only when asked for the CPU; it would otherwise run each rank alone.
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    device = "cpu" if accelerator.device.type == "cpu" else str(accelerator.device)
    spec = EvalSpec.model_validate(job["spec"])
    tokenizer = load_tokenizer(job["model"])
    model = AutoModelForCausalLM.from_pretrained(
        job["model"], dtype=getattr(torch, job["dtype"]), attn_implementation=job["attn_implementation"],
        use_safetensors=True,
    ).to(device)
    model.eval()
    result = evaluate_spec(
        model, tokenizer, spec, seed=job["seed"], samples_dir=Path(job["samples_dir"]), device=device,
        accelerator=accelerator,
    )
    if result is not None:
        (job_path.parent / RESULT_FILE).write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m posttrain.launch.eval_worker <folder>/eval-launch/eval_job.json", file=sys.stderr)
        return 2
    job_path = Path(args[0])
    from posttrain.launch.launcher import die_with_parent

    die_with_parent(signal.SIGKILL)  # a killed launcher takes its workers with it
    try:
        evaluate_job(job_path)
    except BaseException as exc:  # every failure, Ctrl-C included, is reported to the orchestrator
        return record_failure(exc, rank_and_world()[0], job_path.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
