"""Fuzz the data loader: mutated JSONL, CSV, Parquet and JSON files through data curation.

    python scripts/fuzz_data.py [--files 1000] [--seed 0] [--keep DIR]

Each file starts as a small valid dataset (chat, preference or prompt rows) and gets one or
more mutations: truncation, wrong types, huge fields, bad encodings, nested junk, deep
nesting, wrong delimiters, random bytes. Every file then goes through
`data_prep.prepare_dataset`, what `posttrain data` runs, and must end one of two ways:
- prepared, with every malformed row in rejects (each with a reason) and the load step's
  counts adding up (rows read = rows kept + rows rejected);
- one `DataPrepError` (what the CLI prints as one `error:` line, exit 2) that names the file.
Anything else is a traceback a user would have seen; the script prints each and exits 1.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("chat", "preference", "prompt")
FORMATS = ("jsonl", "csv", "parquet", "json")
ROWS_PER_FILE = 24


# --------------------------------------------------------------------------- valid rows


def valid_row(kind: str, i: int) -> dict[str, Any]:
    question = f"What is {i} plus {i + 1}? Reply with the number."
    if kind == "chat":
        return {"messages": [{"role": "user", "content": question},
                             {"role": "assistant", "content": f"The answer is {2 * i + 1}."}]}
    if kind == "preference":
        return {"prompt": question, "chosen": f"{2 * i + 1}", "rejected": f"{2 * i + 2}"}
    return {"prompt": question}


def flat(row: dict[str, Any]) -> dict[str, str]:
    """A row as CSV/Parquet cells: nested values as JSON text (how the loader decodes such cells)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in row.items()}


# --------------------------------------------------------------------------- row mutations

JUNK_VALUES: list[Any] = [
    None, 0, -1, 3.5, True, "", " ", [], {}, [[]], [None], {"a": {"b": {"c": []}}}, "\x00", "\ud800",
    "🙂" * 3, float("nan"), ["messages"], [{"role": 1, "content": 2}], [{"content": "no role"}],
    [{"role": "user"}], [{"role": "wizard", "content": "x"}], [{"role": "assistant", "content": "first"}],
]


def mutate_row(row: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    row = json.loads(json.dumps(row))
    choice = rng.randrange(7)
    key = rng.choice(list(row))
    if choice == 0:  # wrong type
        row[key] = rng.choice(JUNK_VALUES)
    elif choice == 1:  # missing field
        del row[key]
    elif choice == 2:  # huge field
        row[key] = "x" * rng.choice([10_000, 300_000, 2_000_000])
    elif choice == 3:  # nested junk
        depth = rng.choice([5, 50, 200])  # 400 levels: within what json.dumps itself can write
        value: Any = "deep"
        for _ in range(depth):
            value = {"v": [value]}
        row[key] = value
    elif choice == 4:  # unknown extra keys, odd key names
        row[rng.choice(["", "\x00", "messages ", "🙂", "a" * 1000])] = rng.choice(JUNK_VALUES)
    elif choice == 5 and "messages" in row:  # broken turns
        row["messages"] = rng.choice([row["messages"][:1], row["messages"] * 3, [row["messages"][1]],
                                      [{"role": "user", "content": ["list", "content"]}]])
    else:  # control characters and lone surrogates inside text
        row[key] = rng.choice(["a\x00b", "tab\tnew\nline\r", "\ud83d", "\u202e reversed", "\x1b[31mred"])
    return row


# --------------------------------------------------------------------------- file writers


def _jsonl_bytes(rows: list[Any], rng: random.Random) -> bytes:
    lines = []
    for row in rows:
        if isinstance(row, bytes):
            lines.append(row)
        else:
            lines.append(json.dumps(row, allow_nan=True).encode("utf-8", "surrogatepass"))
    sep = rng.choice([b"\n", b"\n", b"\r\n"])
    return sep.join(lines) + sep


def _csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    import csv

    buf = io.StringIO()
    keys = sorted({k for r in rows for k in r})
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: v for k, v in flat(r).items()})
    return buf.getvalue().encode("utf-8", "surrogatepass")


def _parquet_bytes(rows: list[dict[str, Any]], rng: random.Random) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def text(value: str) -> str:  # Arrow stores UTF-8 only: a lone surrogate becomes U+FFFD
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")

    table = None
    if rng.random() < 0.5:  # typed columns: arrow infers nested types (or refuses mixed ones)
        try:
            table = pa.Table.from_pylist(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
            table = None
    if table is None:
        table = pa.Table.from_pylist([{text(k): text(v) for k, v in flat(r).items()} for r in rows])
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _json_bytes(rows: list[Any], rng: random.Random) -> bytes:
    shape = rng.randrange(3)
    doc: Any = rows if shape == 0 else {"data": rows} if shape == 1 else {"rows": rows, "meta": {"n": len(rows)}}
    return json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")


# --------------------------------------------------------------------------- file mutations


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))] if data else data


def _bad_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if out:
            out[rng.randrange(len(out))] = rng.choice([0xFF, 0xFE, 0xC3, 0x00, 0x80, 0xED])
    return bytes(out)


def _encode_other(data: bytes, rng: random.Random) -> bytes:
    text = data.decode("utf-8", "replace")  # parquet bytes are not text; re-encoding them still mangles them
    codec = rng.choice(["utf-16", "utf-16-le", "latin-1", "utf-8-sig", "cp1252"])
    return text.encode(codec, "replace")


def _random_bytes(data: bytes, rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 17, 4096])))


def _deep_nesting(data: bytes, rng: random.Random) -> bytes:
    depth = rng.choice([1000, 100_000])
    return data + b"[" * depth + b"]" * depth + b"\n"


def _long_line(data: bytes, rng: random.Random) -> bytes:
    return data + b'{"prompt": "' + b"y" * rng.choice([5_000_000, 20_000_000]) + b'"}\n'


def _blank(data: bytes, rng: random.Random) -> bytes:
    return rng.choice([b"", b"\n\n\n", b"   ", b"\xef\xbb\xbf", b"null\n", b"[]", b"{}"])


FILE_MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncate": _truncate, "bad_bytes": _bad_bytes, "other_encoding": _encode_other,
    "random_bytes": _random_bytes, "deep_nesting": _deep_nesting, "long_line": _long_line, "blank": _blank,
}


# --------------------------------------------------------------------------- one fuzzed file


@dataclass
class FuzzFile:
    path: Path
    kind: str
    fmt: str
    mutations: list[str]


def make_file(folder: Path, index: int, rng: random.Random) -> FuzzFile:
    kind, fmt = rng.choice(KINDS), rng.choice(FORMATS)
    rows: list[Any] = [valid_row(kind, i) for i in range(ROWS_PER_FILE)]
    mutations: list[str] = []
    bad_rows = rng.choice([0, 1, 3, ROWS_PER_FILE // 2, ROWS_PER_FILE])
    for i in rng.sample(range(len(rows)), bad_rows):
        rows[i] = mutate_row(rows[i], rng)
    if bad_rows:
        mutations.append(f"rows:{bad_rows}")
    if fmt == "jsonl":
        if rng.random() < 0.3:  # lines that are not objects
            for i in rng.sample(range(len(rows)), 3):
                rows[i] = rng.choice([b"[1, 2]", b'"text"', b"42", b"{", b"\xff\xfe{}", b'{"a": NaN}', b"}}"])
            mutations.append("lines")
        data = _jsonl_bytes(rows, rng)
    elif fmt == "csv":
        data = _csv_bytes(rows)
        if rng.random() < 0.3:
            data = data.replace(b",", rng.choice([b";", b"\t", b'","', b'"']))
            mutations.append("delimiter")
    elif fmt == "parquet":
        data = _parquet_bytes(rows, rng)
    else:
        data = _json_bytes(rows, rng)
    if rng.random() < 0.5:
        name = rng.choice(list(FILE_MUTATIONS))
        data = FILE_MUTATIONS[name](data, rng)
        mutations.append(name)
    path = folder / f"fuzz{index:04d}-{kind}.{fmt}"
    path.write_bytes(data)
    return FuzzFile(path, kind, fmt, mutations)


# --------------------------------------------------------------------------- running


@dataclass
class FuzzSummary:
    files: int = 0
    prepared: int = 0
    clear_errors: int = 0
    rows_read: int = 0
    rows_rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    """One line per file that ended in a traceback or broke a promise (the file, its mutations, what)."""
    seconds: float = 0.0

    @property
    def tracebacks(self) -> int:
        return len(self.failures)


def check_file(fuzz: FuzzFile, out_dir: Path, summary: FuzzSummary) -> None:
    from data_prep import prepare_dataset
    from data_prep.errors import DataPrepError
    from data_prep.spec import DatasetSpec

    spec = DatasetSpec.model_validate({
        "kind": fuzz.kind, "sources": [{"path": fuzz.path.name}], "eval_split": 0.1,
        "curate": [{"dedup": "exact"}, {"quality": "default"}],
    })
    label = f"{fuzz.path.name} [{', '.join(fuzz.mutations) or 'valid'}]"
    summary.files += 1
    try:
        prepared = prepare_dataset(fuzz.path.stem, spec, base_dir=fuzz.path.parent, out_dir=out_dir, seed=0)
    except DataPrepError as exc:
        message = exc.render()
        if fuzz.path.name not in message:
            summary.failures.append(f"{label}: error does not name the file: {message[:200]!r}")
        elif "\n" in str(exc):
            summary.failures.append(f"{label}: error is more than one line: {str(exc)[:200]!r}")
        else:
            summary.clear_errors += 1
        return
    except Exception:  # the one thing this script exists to find
        summary.failures.append(f"{label}: traceback\n{traceback.format_exc(limit=6)}")
        return
    load = prepared.report["steps"][0]
    rejects = [json.loads(line) for line in (out_dir / "rejects.jsonl").read_text().splitlines() if line] \
        if (out_dir / "rejects.jsonl").is_file() else []
    malformed = [r for r in rejects if r["operator"] in ("load", "format")]
    if load["rows_in"] != load["rows_out"] + load["removed"] - load.get("details", {}).get("pairs_split", 0) \
            or len(malformed) != load["removed"]:
        summary.failures.append(f"{label}: rows do not add up: load step {load}, {len(malformed)} malformed rejects")
    if any(not r.get("reason") for r in rejects):
        summary.failures.append(f"{label}: a reject without a reason")
    summary.prepared += 1
    summary.rows_read += load["rows_in"]
    summary.rows_rejected += len(malformed)
    summary.reasons.update(r["reason"] for r in malformed)


def run_fuzz(n_files: int, seed: int, work: Path) -> FuzzSummary:
    rng = random.Random(seed)
    files_dir, out_root = work / "files", work / "out"
    files_dir.mkdir(parents=True, exist_ok=True)
    summary = FuzzSummary()
    started = time.perf_counter()
    for i in range(n_files):
        fuzz = make_file(files_dir, i, rng)
        check_file(fuzz, out_root / fuzz.path.stem, summary)
        shutil.rmtree(out_root / fuzz.path.stem, ignore_errors=True)
        if fuzz.path.stat().st_size > 1_000_000:  # keep the disk small; the failures list says what it was
            fuzz.path.unlink()
    summary.seconds = time.perf_counter() - started
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000, help="mutated files to generate (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="write the files here and keep them (default: a temp folder)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="posttrain-fuzz-"))
    try:
        s = run_fuzz(args.files, args.seed, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"files: {s.files}  prepared: {s.prepared}  one clear error: {s.clear_errors}  "
          f"tracebacks/broken promises: {s.tracebacks}")
    print(f"rows read (prepared files): {s.rows_read}  rejected with a reason: {s.rows_rejected}  "
          f"time: {s.seconds:.1f} s ({1000 * s.seconds / max(s.files, 1):.0f} ms/file)")
    print("reject reasons: " + ", ".join(f"{k} {v}" for k, v in s.reasons.most_common()))
    for line in s.failures:
        print(f"FAIL {line}", file=sys.stderr)
    return 1 if s.failures else 0


if __name__ == "__main__":
    sys.exit(main())
