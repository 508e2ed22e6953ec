"""Shared fixtures: a tiny random chat model built in code, offline, in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tiny_tokenizer():
    """A byte-level BPE with the ChatML specials of SmolLM2, trained on a few lines of text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "What is 12 + 7? End your reply with \"Answer: <number>\". Answer: 19",
        "user assistant system You are a helpful assistant. Hello there, how are you?",
        "0 1 2 3 4 5 6 7 8 9 10 + - * = apples buys gives away more How many now",
    ] * 20
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(vocab_size: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    return LlamaForCausalLM(config)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Llama + tokenizer folder: loadable by path like any HF model."""
    folder = tmp_path_factory.mktemp("tiny-model")
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


# An exported artifact scored in its engine, written by hand (ARCHITECTURE.md "An exported artifact scored in
# its engine"): for the report and leaderboard tests, which read these files and must not need an engine.

def write_scored_artifact(
    stage_dir: Path, artifact: str, per_doc: dict[str, list[float]], reference: dict[str, list[float]], *,
    spec: str | None = None, engine: str = "llama.cpp", engine_version: str = "0.3.36", file: str | None = None,
    size_bytes: int = 0, command: str | None = None, speed: dict | None = None, parity: dict | None = None,
    skipped_tasks: dict[str, str] | None = None, metric: str = "exact_match",
) -> Path:
    """`<stage_dir>/export/scored/<artifact>/` with eval.json, samples/<task>.jsonl and artifact.json.

    `per_doc` and `reference` map task → the artifact's and the merged model's value on each document (document i
    at index i); the intervals, Δ, paired p-value and verdict are computed with posttrain's own statistics, as the
    scoring does. Returns the folder."""
    import json

    from posttrain.evaluation.stats import Z95, paired_test, sample_stderr, task_stats

    folder = stage_dir / "export" / "scored" / artifact
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    tasks, stats = {}, {}
    for task, values in per_doc.items():
        rows = [{"task": task, "doc_id": i, "prompt": f"doc {i}", "target": "1", "response": str(int(v)),
                 "metrics": {metric: v}} for i, v in enumerate(values)]
        (folder / "samples" / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        score = sum(values) / len(values)
        st = task_stats(metric, score, values, reported_stderr=None, n=len(values), chance=0.0)
        stats[task] = st.to_json()
        ref = reference[task]
        test = paired_test(dict(enumerate(ref)), dict(enumerate(values)))
        diffs = [b - a for a, b in zip(ref, values, strict=True)]
        half = Z95 * sample_stderr(diffs)
        delta = test.delta
        verdict = (f"{'loses' if delta < 0 else 'gains'} {abs(delta):.2f}, significant" if test.significant
                   else f"{delta:+.2f}, within noise")
        tasks[task] = {"metric": metric, "score": score, "stderr": st.stderr, "ci95": list(st.ci95), "n": len(values),
                       "reference_score": sum(ref) / len(ref), "delta": delta, "delta_ci95": [delta - half, delta + half],
                       "p_value": test.p_value, "significant": test.significant, "verdict": verdict}
    (folder / "eval.json").write_text(json.dumps({
        "fingerprint": f"artifact-{artifact}", "label": f"{stage_dir.name}@{artifact}",
        "scores": {t: v["score"] for t, v in tasks.items()}, "stats": stats,
        "results": {"primary": {t: metric for t in tasks}, "tasks": {t: {metric: v["score"]} for t, v in tasks.items()}},
    }, indent=1))
    (folder / "artifact.json").write_text(json.dumps({
        "artifact": artifact, "spec": spec or f"gguf:{artifact}", "stage": stage_dir.name, "engine": engine,
        "engine_version": engine_version, "file": file or f"export/gguf/model-{artifact}.gguf", "size_bytes": size_bytes,
        "command": command or f"llama-server -m {stage_dir.name}/export/gguf/model-{artifact}.gguf",
        "reference": "merged", "tasks": tasks, "skipped_tasks": skipped_tasks or {},
        "speed": speed or {"prompt_tokens_per_s": 0.0, "generation_tokens_per_s": 0.0, "peak_memory_mb": 0.0},
        "parity": parity or {k: {"ok": None, "detail": "not checked"} for k in ("chat_template", "end_of_turn",
                                                                               "greedy_tokens")},
        "protocol": {"limit": None, "num_fewshot": 0},
    }, indent=1))
    return folder


@pytest.fixture
def scored_artifact_writer():
    """write_scored_artifact, for tests that need an exported artifact scored in its engine without an engine."""
    return write_scored_artifact
