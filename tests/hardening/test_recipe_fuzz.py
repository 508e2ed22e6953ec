"""Whatever a recipe file contains, loading it either works or raises one UserError — never anything else.

A seeded mutator damages every shipped recipe 1,000+ times in all: keys dropped,
values replaced by other types, unknown keys, lists where names belong, and
text damage (cut lines, NUL bytes, invalid UTF-8, stray brackets, tabs).
"""

from __future__ import annotations

import copy
import io
import random
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from data_prep.errors import DataPrepError
from posttrain.errors import UserError
from posttrain.pipeline.plan import plan_run
from posttrain.pipeline.session import open_session
from posttrain.recipe.loader import load_recipe

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "recipes").glob("*.yaml")) + sorted((ROOT / "recipes" / "gpu").glob("*.yaml"))
MUTANTS_PER_RECIPE = 150
ODD_VALUES: list[Any] = [
    None, True, 0, -1, 10**30, 1.5e308, float("nan"), float("inf"), "", "x" * 300, "../../etc/passwd",
    "base", "sft", [], [1, "a"], ["chat"], {}, {"a": 1}, {"type": "sft"}, "\u202e\ud7ff", "-1", "1e-4",
]


def _nodes(tree: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    found = [(path, tree)]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += _nodes(value, (*path, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += _nodes(value, (*path, index))
    return found


def odd_value(rng: random.Random) -> Any:
    """A fresh copy of one of ODD_VALUES: a shared list put into a tree could later be mutated to hold itself."""
    return copy.deepcopy(rng.choice(ODD_VALUES))


def mutate_tree(tree: Any, rng: random.Random) -> None:
    """One structural change in place: drop, retype, add or reshape a node."""
    node = rng.choice([n for _, n in _nodes(tree) if isinstance(n, (dict, list)) and n])
    key = rng.choice(list(node.keys()) if isinstance(node, dict) else list(range(len(node))))
    action = rng.randrange(5)
    if action == 0:
        del node[key]
    elif action == 1:
        node[key] = odd_value(rng)
    elif action == 2 and isinstance(node, dict):
        node[rng.choice(["typo", "lr", "stages", "name", "dat", "lora", "type"]) + rng.choice(["", "_", "s"])] = odd_value(rng)
    elif action == 3:
        value = node[key]
        node[key] = CommentedSeq([value]) if not isinstance(value, list) else CommentedMap(x=value)
    else:
        node[key] = str(node[key]) if not isinstance(node[key], str) else CommentedSeq([node[key]])


def mutate_text(text: str, rng: random.Random) -> bytes:
    """Damage the file as text or bytes."""
    data = text.encode()
    action = rng.randrange(6)
    at = rng.randrange(len(data) + 1)
    if action == 0:
        return data[:at] + b"\x00" + data[at:]
    if action == 1:
        return data[:at] + bytes([rng.randrange(128, 256)]) + data[at:]
    if action == 2:
        return data[:at] + rng.choice([b"{", b"[", b"}", b":", b"- ", b"\t", b"&a", b"*a", b"!!python/object:os.system"]) + data[at:]
    if action == 3:
        return data[: at] + data[min(len(data), at + rng.randrange(1, 40)) :]
    if action == 4:
        lines = data.splitlines(keepends=True)
        rng.shuffle(lines)
        return b"".join(lines)
    return data[:at]


OVERRIDE_KEYS = [
    "seed", "name", "model", "model.base", "model.dtype", "stages", "stages.0", "stages.0.type", "stages.0.data",
    "stages.sft.train.lr", "stages.sft.lora", "stages.sft.lora.r", "stages.-1.after", "datasets", "datasets.chat",
    "datasets.chat.sources", "eval.tasks", "eval.limit", "export.formats", "stages.9.name", "nope.deeper",
]
OVERRIDE_VALUES = ["1", "-3", "[x]", "{a: 1}", "", "null", "nan", "[", "sft", "{{", "base", "1e999", "[pt_arith]"]


def random_overrides(rng: random.Random) -> list[str]:
    return [f"{rng.choice(OVERRIDE_KEYS)}={rng.choice(OVERRIDE_VALUES)}" for _ in range(rng.randint(1, 3))]


def mutants(rng: random.Random) -> list[tuple[str, bytes]]:
    yaml = YAML(typ="rt")
    out = []
    for recipe in SHIPPED:
        text = recipe.read_text()
        for index in range(MUTANTS_PER_RECIPE):
            if index % 3 == 2:
                out.append((f"{recipe.name}#{index} text", mutate_text(text, rng)))
                continue
            tree = yaml.load(text)
            for _ in range(rng.randint(1, 3)):
                mutate_tree(tree, rng)
            buffer = io.StringIO()
            try:
                yaml.dump(tree, buffer)
            except Exception:  # a value ruamel cannot write is no recipe anyone can have
                continue
            out.append((f"{recipe.name}#{index} tree", buffer.getvalue().encode()))
    return out


@pytest.mark.slow
def test_a_thousand_damaged_recipes_give_messages_not_tracebacks(tmp_path: Path) -> None:
    # Mutants live where the shipped recipes do relative to data/, so their paths still resolve.
    (tmp_path / "recipes").mkdir()
    (tmp_path / "data").symlink_to(ROOT / "data")
    rng = random.Random(20261127)
    cases = mutants(rng)
    assert len(cases) >= 1000
    started = time.time()
    valid, errors, crashes, planned = 0, 0, [], []
    for label, content in cases:
        path = tmp_path / "recipes" / "mutant.yaml"
        path.write_bytes(content)
        overrides = random_overrides(rng) if rng.random() < 0.2 else []
        try:
            loaded = load_recipe(path, overrides)
            valid += 1
            if len(planned) < 8 and loaded.recipe.model.base == "smollm2-135m-instruct":
                planned.append(label)
                plan_run(open_session(loaded, runs_dir=tmp_path / "runs"))
        except (UserError, DataPrepError) as exc:
            errors += 1
            assert exc.render().strip(), label
        except Exception:
            crashes.append(f"{label} {overrides}:\n{traceback.format_exc(limit=3)}")
    seconds = time.time() - started
    print(f"\n{len(cases)} mutated recipes: {valid} valid, {errors} clear errors, {len(crashes)} crashes "
          f"({len(planned)} valid ones also planned), {seconds:.1f}s")
    assert not crashes, f"{len(crashes)} tracebacks, first:\n{crashes[0]}"
    assert errors > len(cases) // 2, "the mutator should mostly produce broken recipes"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name: x\x00y\n", "not valid YAML"),
        (b"name: t\nmodel: {base: m}\nstages: [{name: a, type: sft, data: [chat]}]\n", "stages[0].data"),
        (b"\xff\xfe", "not UTF-8"),
        (b"- just\n- a list\n", "a recipe is a YAML mapping"),
    ],
)
def test_the_cli_says_what_is_wrong_and_exits_2(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(content)
    result = subprocess.run(
        [sys.executable, "-m", "posttrain.cli", "validate", str(path)], capture_output=True, text=True,
        cwd=ROOT, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
