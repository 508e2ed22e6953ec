"""Fixtures for the export tests: serving-engine virtualenvs, and run directories as `posttrain run` leaves them.

Training is not what the export tests test, so each stage's adapter is a PEFT
LoRA with random A and B (PEFT's `init_lora_weights=False`), scaled so that it
visibly changes greedy outputs without turning the model into noise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_adapter(base_dir: Path, out: Path, *, r: int, seed: int, scale: float = 0.02,
                 targets: list[str] | None = None, base_model=None, **lora_kwargs) -> Path:
    """Save a random PEFT LoRA of rank `r` for the model in `base_dir`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = base_model or AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets or ALL_PROJECTIONS, lora_dropout=0.0,
                        init_lora_weights=False, task_type="CAUSAL_LM", **lora_kwargs)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn_like(param) * scale)
    peft_model.save_pretrained(out)
    peft_model.unload()  # leave `base_model` as it was, for the next adapter
    return out


def make_run(runs: Path, base_dir: Path, stages: list[tuple[str, int]], *, name: str = "exp",
             scale: float = 0.02) -> Path:
    """A run directory with one completed LoRA stage per (name, rank), each on the one before."""
    from transformers import AutoModelForCausalLM

    run_dir = runs / name
    run_dir.mkdir(parents=True)
    recipe = {
        "name": name,
        "model": {"base": str(base_dir)},
        "datasets": {"chat": {"sources": [{"path": "chat.jsonl"}]}},
        "eval": {"tasks": ["pt_arith"], "limit": 4},
        "stages": [
            {"name": stage, "type": "sft", "data": "chat", "lora": {"r": r}} for stage, r in stages
        ],
    }
    (run_dir / "recipe.resolved.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    base_model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    previous = "base"
    adapters: list[str] = []
    for index, (stage, r) in enumerate(stages):
        adapter = make_adapter(base_dir, run_dir / stage / "adapter", r=r, seed=index + 1, scale=scale,
                               base_model=base_model)
        adapters.append(str(adapter))
        status = {"name": stage, "type": "sft", "status": "completed", "input": previous,
                  "fingerprint": f"fp-{stage}-{r}", "lineage": {"base": str(base_dir), "adapters": list(adapters)}}
        (run_dir / stage / "stage.json").write_text(json.dumps(status))
        (run_dir / stage / "eval.json").write_text(json.dumps({
            "scores": {"pt_arith": 0.25 + 0.1 * index},
            "results": {"primary": {"pt_arith": "exact_match"},
                        "tasks": {"pt_arith": {"exact_match": 0.25 + 0.1 * index, "exact_match_stderr": 0.05}}},
        }))
        previous = stage
    (run_dir / "base").mkdir()
    (run_dir / "base" / "eval.json").write_text(json.dumps({"scores": {"pt_arith": 0.2}}))
    return run_dir


@pytest.fixture(scope="session")
def run_factory():
    """`make_run(runs, base_dir, [(stage, rank), ...])` for tests that build their own run."""
    return make_run

def engines_dir() -> Path:
    """Where scripts/setup_engines.sh puts the engine virtualenvs."""
    return Path(os.environ.get("POSTTRAIN_ENGINES", Path.home() / ".cache" / "posttrain" / "engines")).expanduser()


def engines_required() -> bool:
    """In CI (or when asked) a missing engine fails the test instead of skipping it."""
    return bool(os.environ.get("CI")) or os.environ.get("POSTTRAIN_REQUIRE_ENGINES") == "1"


def find_engine_python(name: str) -> Path:
    """The python of the engine's own virtualenv (`vllm`, `llama-cpp`), or skip/fail saying how to install it."""
    venv = engines_dir() / f"{name}-venv"
    if not list(venv.glob(".installed-*")):
        message = (f"the {name} engine is not installed in {venv}; run scripts/setup_engines.sh "
                   f"(or `make engines`), POSTTRAIN_ENGINES={engines_dir()}")
        if engines_required():
            pytest.fail(message)
        pytest.skip(message)
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def embedded_base() -> Path:
    """The embedded SmolLM2-135M-Instruct as a Hugging Face folder (converted once, cached)."""
    from posttrain.models.resolve import resolve_model

    return Path(resolve_model("smollm2-135m-instruct").path)


@pytest.fixture(scope="session")
def embedded_run(tmp_path_factory: pytest.TempPathFactory, embedded_base: Path) -> Path:
    """A two-stage run on the embedded model: `sft` (LoRA r=8), then `dpo` (r=16) on top of it.

    The cumulative adapter of `dpo` has rank 24, which vLLM serves with --max-lora-rank 32.
    """
    return make_run(tmp_path_factory.mktemp("engine-runs"), embedded_base, [("sft", 8), ("dpo", 16)], name="emb")


@pytest.fixture(scope="session")
def engine_python():
    """`engine_python("vllm")`: the engine venv's python, or skip (fail in CI) with how to install it."""
    return find_engine_python


# --- tiny models of the architecture families llama.cpp's converter takes -------------------------------------
# Hidden and intermediate sizes are multiples of 256, so every weight row splits into K-quant blocks and a
# q4_k_m file really holds Q4_K (llama.cpp falls back to other types on rows it cannot split).

FAMILY_SHAPE = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=512)
BPE_FAMILIES = ("llama", "olmo2", "qwen3_moe")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def _family_config(family: str, vocab_size: int, shape: dict | None = None):
    from transformers import (
        Gemma2Config,
        Gemma3TextConfig,
        GraniteConfig,
        LlamaConfig,
        MistralConfig,
        Olmo2Config,
        Phi3Config,
        Qwen2Config,
        Qwen3Config,
        Qwen3MoeConfig,
    )

    ids = dict(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    dims = shape or FAMILY_SHAPE
    head_dim = dims["hidden_size"] // dims["num_attention_heads"]
    if family == "llama":  # untied: the output head is a tensor of its own
        return LlamaConfig(vocab_size=vocab_size, tie_word_embeddings=False, **ids, **dims)
    if family == "qwen2":  # q/k/v biases
        return Qwen2Config(vocab_size=vocab_size, tie_word_embeddings=True, use_sliding_window=False, **ids,
                           **dims)
    if family == "qwen3":  # q/k norms
        return Qwen3Config(vocab_size=vocab_size, head_dim=head_dim, tie_word_embeddings=True, use_sliding_window=False,
                           **ids, **dims)
    if family == "qwen3_moe":  # 4 experts, 2 a token: fused 3-D expert weights and a router on every layer
        return Qwen3MoeConfig(vocab_size=vocab_size, head_dim=head_dim, tie_word_embeddings=True, num_experts=4,
                              num_experts_per_tok=2, moe_intermediate_size=256, decoder_sparse_step=1, **ids,
                              **dims)
    if family == "gemma2":  # four norms a layer, logit soft-capping, sliding-window layers
        # llama.cpp scales queries by 1/sqrt(head_dim) and ignores query_pre_attn_scalar (the released 2B and
        # 9B have the two equal); transformers' default 256 would make a model llama.cpp runs differently.
        return Gemma2Config(vocab_size=vocab_size, head_dim=head_dim, query_pre_attn_scalar=head_dim, sliding_window=128, **ids,
                            **dims)
    if family == "phi3":  # fused qkv_proj and gate_up_proj
        return Phi3Config(vocab_size=vocab_size, tie_word_embeddings=False, **ids, **dims)
    if family == "olmo2":  # norms after attention and MLP, q/k norms over all heads
        return Olmo2Config(vocab_size=vocab_size, tie_word_embeddings=False, **ids, **dims)
    if family == "mistral":  # Llama's layout, sliding-window attention
        return MistralConfig(vocab_size=vocab_size, head_dim=head_dim, sliding_window=128, **ids, **dims)
    if family == "gemma3_text":  # Gemma-2's norms plus q/k norms, local/global layers with two rope bases
        return Gemma3TextConfig(vocab_size=vocab_size, head_dim=head_dim, query_pre_attn_scalar=head_dim,
                                sliding_window=128, **ids, **dims)
    if family == "granite":  # Llama's layout with embedding, residual, attention and logit multipliers
        return GraniteConfig(vocab_size=vocab_size, tie_word_embeddings=True, embedding_multiplier=2.0,
                             residual_multiplier=0.5, attention_multiplier=1.0 / head_dim, logits_scaling=2.0,
                             **ids, **dims)
    raise ValueError(family)


def _sentencepiece_model(out: Path, byte_fallback: bool = False) -> int:
    """Train a tiny SentencePiece model (Gemma's converter reads `tokenizer.model`); returns its vocab size.
    With `byte_fallback` every text round-trips (unknown characters become byte pieces), as chat data needs."""
    import io

    import sentencepiece as spm

    lines = ["What is 12 + 7? Answer: 19", "user assistant system You are a helpful assistant.",
             "Hello there, how are you? apples buys gives away more How many now"] * 30
    model = io.BytesIO()
    vocab = 400 if byte_fallback else 200  # the 256 byte pieces come on top of the merges
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab,
                                   model_type="bpe", pad_id=0, bos_id=1, eos_id=2, unk_id=3,
                                   byte_fallback=byte_fallback, minloglevel=2)
    (out / "tokenizer.model").write_bytes(model.getvalue())
    return vocab


def build_family(family: str, out: Path, embedded_tokenizer: Path, seed: int = 0, shape: dict | None = None,
                 bpe: bool | None = None) -> Path:
    """A saved tiny random model of `family`, with a tokenizer llama.cpp's converter accepts.

    Llama and OLMo-2 get the embedded model's byte-level BPE (whose pre-tokenizer the converter knows); the
    others a SentencePiece model trained here, which every one of their converters reads first: Gemma-2's
    reads nothing else, transformers 5 loads any tokenizer of a qwen2 model as Qwen2Tokenizer (which
    pre-tokenizes the embedded vocabulary in a way the converter does not recognize), and a 256-token
    vocabulary keeps the files, and reading their headers, small. `bpe` picks the tokenizer instead (a
    SentencePiece one then falls back to bytes, so any text round-trips); `shape` replaces FAMILY_SHAPE.
    """
    import shutil

    from transformers import AutoModelForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    if not (family in BPE_FAMILIES if bpe is None else bpe):
        # the converter pads the SentencePiece vocabulary up to the model's
        vocab = 256 if bpe is None else 512
        _sentencepiece_model(out, byte_fallback=bpe is not None)
    else:
        vocab = 49152
        for name in TOKENIZER_FILES:
            if (embedded_tokenizer / name).exists():
                shutil.copy2(embedded_tokenizer / name, out / name)
        # Said as a GPT-2 BPE: the Phi-3 converter reads a BPE vocabulary only then, and transformers would
        # otherwise load it as the family's own tokenizer class (Qwen2's rebuilds the pre-tokenizer, which the
        # converter then no longer recognizes).
        config = json.loads((out / "tokenizer_config.json").read_text())
        (out / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "GPT2Tokenizer"}))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_family_config(family, vocab, shape), dtype=torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def family_builder():
    """`family_builder(family, out, embedded_tokenizer_folder)`: a tiny random model of that family, saved."""
    return build_family


@pytest.fixture(scope="session")
def gguf_tools(engine_python) -> Path:
    """llama.cpp's converters (scripts/setup_engines.sh tools) and its quantizer (the llama-cpp venv), or
    skip (fail in CI) saying how to install them."""
    tools = engines_dir() / "llama-cpp-tools"
    if not list(tools.glob("*/convert_hf_to_gguf.py")):
        message = f"llama.cpp's GGUF converters are not in {tools}; run scripts/setup_engines.sh tools"
        if engines_required():
            pytest.fail(message)
        pytest.skip(message)
    engine_python("llama-cpp")
    return tools


@pytest.fixture(scope="session")
def gguf_base_dir(tmp_path_factory: pytest.TempPathFactory, embedded_base: Path) -> Path:
    """A tiny random Llama with the embedded model's tokenizer and chat template: small and fast like
    `tiny_model_dir`, but with a vocabulary llama.cpp's converter recognizes and rows K-quants can split."""
    return build_family("llama", tmp_path_factory.mktemp("gguf-base"), embedded_base)


@pytest.fixture(scope="session")
def gguf_run(tmp_path_factory: pytest.TempPathFactory, gguf_base_dir: Path) -> Path:
    """A two-stage LoRA run (`sft` r=4, then `dpo` r=8) on `gguf_base_dir`."""
    return make_run(tmp_path_factory.mktemp("gguf-runs"), gguf_base_dir, [("sft", 4), ("dpo", 8)], name="gg")
