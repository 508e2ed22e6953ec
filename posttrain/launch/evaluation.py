"""A model's lm-eval evaluation on several processes of this machine (the recipe's `eval.num_processes`).

The orchestrator writes the model it would have evaluated in process (a
PEFT model with its adapter merged) and the tokenizer to
`<eval folder>/eval-launch/model`, then launches `posttrain.launch.eval_worker`
once per process through `accelerate launch`. Each rank evaluates its share
of the documents (evaluation/sharded.py); rank 0 writes the per-document
samples where the in-process path writes them and `result.json`, the record
`evaluate_spec` returns. The model folder is removed afterwards; a failing
rank's error comes back as the run's error, as for a launched stage.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from posttrain.errors import UserError
from posttrain.launch.job import RESULT_FILE
from posttrain.launch.launcher import LOG_FILE, local_argv, rank_error, run_streaming
from posttrain.stagekit.specs import EvalSpec

EVAL_LAUNCH_DIR = "eval-launch"
"""Beside eval.json: the launch's job, log and errors (the model folder only while it runs)."""
EVAL_JOB_FILE = "eval_job.json"
MODEL_DIR = "model"


def evaluate_launched(
    model: Any, tokenizer: Any, spec: EvalSpec, *, seed: int, samples_dir: Path, work_dir: Path, label: str,
    console: Console,
) -> dict[str, Any]:
    """`evaluate_spec(model, tokenizer, spec, ...)` computed by `spec.num_processes` processes.

    A PEFT model is merged into its base in place (the caller is done with it).
    """
    processes = spec.num_processes
    _check_devices(processes)
    shutil.rmtree(work_dir, ignore_errors=True)
    model_dir = work_dir / MODEL_DIR
    job_path = work_dir / EVAL_JOB_FILE
    job = {
        "model": str(model_dir.resolve()), **write_model(model, tokenizer, model_dir),
        "spec": spec.model_dump(mode="json"), "seed": seed, "samples_dir": str(samples_dir.resolve()),
    }
    job_path.write_text(json.dumps(job, indent=1))
    console.print(f"evaluating {label} on {processes} processes")
    try:
        argv = local_argv(processes, "posttrain.launch.eval_worker", str(job_path))
        returncode = run_streaming(argv, work_dir / LOG_FILE, console)
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)
    result_path = work_dir / RESULT_FILE
    if returncode == 0 and result_path.is_file():
        result = json.loads(result_path.read_text())
        shutil.rmtree(work_dir, ignore_errors=True)
        return result
    raise rank_error(label, work_dir, returncode, what="evaluation of")


def write_model(model: Any, tokenizer: Any, folder: Path) -> dict[str, str]:
    """Save the model as the workers load it; what they need to load it exactly as it is here."""
    if getattr(model, "hf_quantizer", None) is not None or getattr(model, "is_loaded_in_4bit", False):
        raise UserError(
            "eval.num_processes > 1 cannot hand a 4-bit model to its workers; evaluate with num_processes: 1"
        )
    if hasattr(model, "merge_and_unload"):  # a PeftModel: the workers load plain weights
        model = model.merge_and_unload()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return {
        "dtype": str(model.dtype).removeprefix("torch."),
        "attn_implementation": str(getattr(model.config, "_attn_implementation", None) or "eager"),
    }


def _check_devices(processes: int) -> None:
    import torch

    if torch.cuda.is_available() and processes > torch.cuda.device_count():
        raise UserError(
            f"eval.num_processes is {processes} but this machine has {torch.cuda.device_count()} GPU(s): "
            "one evaluation process per GPU"
        )



