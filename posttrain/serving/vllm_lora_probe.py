"""Run by the vLLM engine venv's python (imports nothing of posttrain): which modules vLLM takes LoRA on.

    python vllm_lora_probe.py FOLDER  ->  JSON on stdout (last line)

FOLDER holds a model's config.json (no weights). vLLM resolves the architecture through its own model registry,
builds that model class on the meta device (no memory, no weights) and answers what its LoRA loader would:
{"architecture", "model_class", "supports_lora", "supported_modules" (vllm.lora.utils.get_supported_lora_modules),
"packed_modules_mapping", "embedding_modules", "expected_modules"} where expected_modules is the set
`LoRAModel.from_local_checkpoint` accepts in an adapter (packed modules expanded, as the worker manager does).
"""

import json
import sys


def main() -> None:
    import torch
    from vllm.config import ModelConfig, VllmConfig, set_current_vllm_config
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.lora.utils import get_supported_lora_modules
    from vllm.model_executor.models import ModelRegistry
    from vllm.model_executor.models.interfaces import supports_lora

    model_config = ModelConfig(model=sys.argv[1], dtype="float32", skip_tokenizer_init=True)
    vllm_config = VllmConfig(model_config=model_config)
    model_class, architecture = ModelRegistry.resolve_model_cls(model_config.architectures, model_config=model_config)
    answer = {"architecture": architecture, "model_class": model_class.__name__,
              "supports_lora": bool(supports_lora(model_class)),
              "packed_modules_mapping": dict(getattr(model_class, "packed_modules_mapping", {}) or {}),
              "embedding_modules": dict(getattr(model_class, "embedding_modules", {}) or {})}
    if answer["supports_lora"]:
        with set_current_vllm_config(vllm_config):
            # One process, one rank, gloo over a local file: what building a layer asks of the parallel state.
            init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                         distributed_init_method=f"file://{sys.argv[2]}")
            initialize_model_parallel(1, 1)
            with torch.device("meta"):
                model = model_class(vllm_config=vllm_config, prefix="")
        supported = sorted(get_supported_lora_modules(model))
        packed = dict(getattr(model, "packed_modules_mapping", {}) or {})
        expected = set()
        for module in supported:  # vllm/lora/worker_manager.py _load_adapter
            expected.update(packed.get(module, [module]))
            if module == "experts":
                expected.add(module)
        answer.update(supported_modules=supported, packed_modules_mapping=packed, expected_modules=sorted(expected))
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
