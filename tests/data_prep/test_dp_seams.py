"""data_prep stands alone: it imports nothing from posttrain, and its errors still exit 2 in the CLI."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import data_prep

PACKAGE = Path(data_prep.__file__).parent
REPO = PACKAGE.parent


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_no_data_prep_module_imports_posttrain() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 10  # the walk really sees the package (operators/ included)
    offenders = [
        f"{path.relative_to(REPO)}:{line}: import {name}"
        for path in modules
        for line, name in _imported_modules(path)
        if name == "posttrain" or name.startswith("posttrain.")
    ]
    assert not offenders, "data_prep must not import posttrain:\n" + "\n".join(offenders)


def test_data_prep_works_as_a_library_without_posttrain(tmp_path: Path) -> None:
    rows = [{"prompt": f"What is {i} + 1?", "answer": f"#### {i + 1}"} for i in range(3)]
    (tmp_path / "prompts.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from data_prep import DatasetSpec, prepare_dataset, read_rows
        from data_prep.errors import DataPrepError

        spec = DatasetSpec(kind="prompt", sources=[{{"path": "prompts.jsonl"}}])
        out = prepare_dataset("p", spec, base_dir=Path({str(tmp_path)!r}), out_dir=Path({str(tmp_path / "out")!r}))
        assert len(read_rows(out.train_path)) == 3
        try:
            prepare_dataset("missing", DatasetSpec(sources=[{{"path": "nope.jsonl"}}]),
                            base_dir=Path({str(tmp_path)!r}), out_dir=Path({str(tmp_path / "out2")!r}))
        except DataPrepError as e:
            assert "nope.jsonl" in str(e)
        else:
            raise AssertionError("a missing file must raise DataPrepError")
        print(sorted(m for m in sys.modules if m == "posttrain" or m.startswith("posttrain.")))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_data_error_exits_2_through_the_cli(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "broken.jsonl").write_text("{not json\n" * 3)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: r\nmodel: {{base: {tiny_model_dir}}}\n"
        "datasets: {chat: {sources: [{path: broken.jsonl}]}}\n"
        "stages: [{name: sft, type: sft, data: chat, train: {max_steps: 1}}]\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "posttrain.cli", "data", str(recipe), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    assert "3 of 3 rows" in result.stderr and "broken.jsonl:1: invalid_json" in result.stderr
    assert "Traceback" not in result.stderr
