"""Models to chat with: any run's base, any completed stage, any exported GGUF quant.

A stage is its lineage (base + each adapter of its chain, merged in order: the cumulative
adapter's exact effect, models/lineage.py); a GGUF quant is served by llama.cpp's own server
(serving/). Models load on first use and stay loaded; the pool holds at most `max_loaded`
(two: side by side) and unloads one unused for `idle_s`, so memory stays bounded.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.run_layout import BASE, RunDir
from posttrain.serving.engines import NO_PENALTY_FIELDS


@dataclass(frozen=True)
class Settings:
    """Generation settings, shown next to every reply."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    """0 is greedy decoding."""
    top_p: float = 1.0
    seed: int = 0

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Settings:
        try:
            settings = cls(int(raw.get("max_new_tokens", 64)), float(raw.get("temperature", 0.0)),
                           float(raw.get("top_p", 1.0)), int(raw.get("seed", 0)))
        except (TypeError, ValueError):
            raise UserError("generation settings must be numbers") from None
        if not (1 <= settings.max_new_tokens <= 1024 and 0 <= settings.temperature <= 5 and 0 < settings.top_p <= 1):
            raise UserError("max_new_tokens must be 1..1024, temperature 0..5, top_p in (0, 1]")
        return settings


def gguf_quants(run: RunDir, stage: str) -> dict[str, Path]:
    """The stage's exported GGUF files by quant (files.json of its gguf export)."""
    folder = run.export_dir(stage) / "gguf"
    try:
        listed = json.loads((folder / "files.json").read_text(encoding="utf-8")).get("models") or {}
    except (OSError, ValueError):
        return {}
    return {q: folder / f for q, f in listed.items() if isinstance(f, str) and (folder / f).is_file()}


def model_choices(runs_dir: Path, runs: list[Path]) -> list[dict[str, str]]:
    """Every model the chat can load: `<run>/base`, `<run>/<stage>`, `<run>/<stage>@gguf:<quant>`."""
    choices = []
    for root in runs:
        run = RunDir(root)
        if run.recipe_file.is_file():
            choices.append({"id": f"{root.name}/{BASE}", "label": f"{root.name} · base"})
        for stage in run.stages():
            if stage == BASE or not run.is_completed(stage):
                continue
            choices.append({"id": f"{root.name}/{stage}", "label": f"{root.name} · {stage}"})
            for quant in gguf_quants(run, stage):
                choices.append({"id": f"{root.name}/{stage}@gguf:{quant}", "label": f"{root.name} · {stage} · GGUF {quant}"})
    return choices


class _LoadGate:
    """Loads exclusive, generations shared: transformers builds a model under a process-wide meta-device
    context, so a forward pass running while another model loads would compute on meta tensors."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.generating = 0
        self.loading = False

    @contextlib.contextmanager
    def load(self) -> Iterator[None]:
        with self.cond:
            self.cond.wait_for(lambda: not self.loading and self.generating == 0)
            self.loading = True
        try:
            yield
        finally:
            with self.cond:
                self.loading = False
                self.cond.notify_all()

    @contextlib.contextmanager
    def generate(self) -> Iterator[None]:
        with self.cond:
            self.cond.wait_for(lambda: not self.loading)
            self.generating += 1
        try:
            yield
        finally:
            with self.cond:
                self.generating -= 1
                self.cond.notify_all()


GATE = _LoadGate()


class _TokenStream:
    """A generate() streamer that hands out text token by token (transformers' own waits for a space)."""

    def __init__(self, tokenizer: Any, prompt_length: int) -> None:
        import queue

        self.tokenizer, self.skip, self.queue = tokenizer, prompt_length, queue.Queue()
        self.tokens: list[int] = []
        self.shown = ""

    def put(self, value: Any) -> None:
        ids = value.reshape(-1).tolist()
        if self.skip:  # the first put is the prompt
            self.skip = 0
            return
        self.tokens.extend(ids)
        self._show(final=False)

    def _show(self, final: bool) -> None:
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            return
        if text.startswith(self.shown) and len(text) > len(self.shown):
            self.queue.put(text[len(self.shown):])
            self.shown = text

    def end(self) -> None:
        self._show(final=True)
        self.queue.put(None)

    def __iter__(self) -> Iterator[str]:
        while (text := self.queue.get(timeout=300)) is not None:
            yield text


class LocalModel:
    """A base or stage in transformers on this machine's device; one generation at a time."""

    def __init__(self, run: RunDir, stage: str) -> None:
        from posttrain.models.lineage import materialize
        from posttrain.models.loading import load_tokenizer

        base = run.base_lineage()
        lineage = base if stage == BASE else run.lineage(stage, base)
        with GATE.load():
            self.model = materialize(lineage, dtype="float32").eval()
            self.tokenizer = load_tokenizer(base.base)
        self.busy = threading.Lock()

    def describe(self, messages: list[dict[str, str]]) -> dict[str, str]:
        prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return {"engine": "transformers", "template": self.tokenizer.chat_template or "", "prompt": prompt}

    def stream(self, messages: list[dict[str, str]], settings: Settings) -> Iterator[str]:
        import torch

        prompt = self.describe(messages)["prompt"]
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        streamer = _TokenStream(self.tokenizer, inputs["input_ids"].shape[1])
        sampling = settings.temperature > 0
        kwargs = {**inputs, "streamer": streamer, "max_new_tokens": settings.max_new_tokens, "do_sample": sampling,
                  "pad_token_id": (self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
                                  else self.tokenizer.eos_token_id)}
        if sampling:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
        failed: list[BaseException] = []

        def generate() -> None:
            try:
                self.model.generate(**kwargs)
            except BaseException as exc:  # said on the page; the streamer must still end
                failed.append(exc)
                streamer.end()

        with self.busy, GATE.generate():
            torch.manual_seed(settings.seed)
            worker = threading.Thread(target=generate, daemon=True)
            worker.start()
            yield from (text for text in streamer if text)
            worker.join()
        if failed:
            raise failed[0]

    def close(self) -> None:
        self.model = None


class GgufModel:
    """One exported GGUF file in llama.cpp's OpenAI server (llama-cpp-python), started on 127.0.0.1."""

    def __init__(self, run: RunDir, stage: str, quant: str) -> None:
        from posttrain.serving.engines import engine_env, engine_python, llama_cpp_command
        from posttrain.serving.process import served

        files = gguf_quants(run, stage)
        if quant not in files:
            raise UserError(f"{run.root.name}/{stage} has no exported GGUF {quant!r}")
        self.template = self._template(files[quant])
        self.stack = contextlib.ExitStack()
        command = llama_cpp_command(engine_python("llama.cpp"), files[quant])
        self.server = self.stack.enter_context(served(command, log=files[quant].parent / f"ui-server-{quant}.log",
                                                      env=engine_env(), ready_timeout=120))

    @staticmethod
    def _template(path: Path) -> str:
        """The chat template the GGUF file carries (what llama.cpp renders with), read from its header."""
        from posttrain.export.llama_cpp import describe

        return describe(path).chat_template or "(none in the GGUF: llama.cpp falls back to its own default)"

    def describe(self, messages: list[dict[str, str]]) -> dict[str, str]:
        return {"engine": "llama.cpp", "template": self.template, "prompt": "(rendered by llama.cpp from the GGUF's template)"}

    def stream(self, messages: list[dict[str, str]], settings: Settings) -> Iterator[str]:
        body = {"messages": messages, "stream": True, "max_tokens": settings.max_new_tokens,
                "temperature": settings.temperature, "top_p": settings.top_p, "seed": settings.seed,
                **NO_PENALTY_FIELDS["llama.cpp"]}
        request = urllib.request.Request(f"{self.server.url}/v1/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as response:
            for raw in response:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:") or line == "data: [DONE]":
                    continue
                delta = (json.loads(line[5:]).get("choices") or [{}])[0].get("delta") or {}
                if delta.get("content"):
                    yield delta["content"]

    def close(self) -> None:
        self.stack.close()


class ModelPool:
    """Loaded models by id: loaded once, least recently used unloaded past `max_loaded`, idle ones after `idle_s`."""

    def __init__(self, runs_dir: Path, *, max_loaded: int = 2, idle_s: float = 600.0) -> None:
        self.runs_dir, self.max_loaded, self.idle_s = runs_dir, max_loaded, idle_s
        self.models: dict[str, tuple[Any, float]] = {}
        self.lock = threading.Lock()
        self.loading: dict[str, threading.Lock] = {}
        self._stop = threading.Event()
        threading.Thread(target=self._reap, daemon=True).start()

    def check(self, model_id: str) -> tuple[RunDir, str, str | None]:
        """(run, stage, GGUF quant or None) of a model id the chat offers; 404 for anything else."""
        from posttrain.ui.files import check_name, not_found

        run_name, _, rest = model_id.partition("/")
        stage, _, artifact = rest.partition("@")
        run = RunDir(self.runs_dir / check_name(run_name))
        if not run.is_run() or (stage != BASE and not run.is_completed(check_name(stage))):
            raise not_found(f"no model {model_id!r}: pick a run's base or a completed stage")
        if not artifact:
            return run, stage, None
        engine, _, quant = artifact.partition(":")
        if engine != "gguf" or quant not in gguf_quants(run, stage):
            raise not_found(f"no model {model_id!r}: the exported GGUF quants of a stage are served here")
        return run, stage, quant

    def _open(self, model_id: str) -> Any:
        run, stage, quant = self.check(model_id)
        return GgufModel(run, stage, quant) if quant else LocalModel(run, stage)

    def get(self, model_id: str) -> Any:
        with self.lock:
            gate = self.loading.setdefault(model_id, threading.Lock())
        with gate:  # two requests for one model load it once
            with self.lock:
                if model_id in self.models:
                    model = self.models[model_id][0]
                    self.models[model_id] = (model, time.monotonic())
                    return model
            model = self._open(model_id)
            with self.lock:
                self.models[model_id] = (model, time.monotonic())
                while len(self.models) > self.max_loaded:
                    oldest = min(self.models, key=lambda k: self.models[k][1])
                    self._unload(oldest)
            return model

    def touch(self, model_id: str) -> None:
        with self.lock:
            if model_id in self.models:
                self.models[model_id] = (self.models[model_id][0], time.monotonic())

    def loaded(self) -> list[str]:
        with self.lock:
            return sorted(self.models)

    def _unload(self, model_id: str) -> None:
        model, _ = self.models.pop(model_id)
        model.close()

    def _reap(self) -> None:
        while not self._stop.wait(min(30.0, self.idle_s / 2)):
            with self.lock:
                for model_id in [k for k, (_, used) in self.models.items() if time.monotonic() - used > self.idle_s]:
                    self._unload(model_id)

    def close(self) -> None:
        self._stop.set()
        with self.lock:
            for model_id in list(self.models):
                self._unload(model_id)
