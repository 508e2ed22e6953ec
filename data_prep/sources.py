"""Read raw records from a source, one at a time, without ever crashing on a bad row.

A source yields `Record`s: either a decoded mapping or the reason it could not
be read (invalid UTF-8, broken JSON, a line over `max_line_bytes`, ...). Files
that cannot be opened at all (missing, unreadable format) raise `DataPrepError`:
that is the user's to fix, not a row to skip.

JSONL is read in binary and decoded per line, so one bad byte costs one row;
an over-long line is skipped in bounded chunks and never held in memory whole.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from data_prep.errors import DataPrepError
from data_prep.rows import has_lone_surrogates
from data_prep.spec import SourceSpec

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
SUFFIXES = (*JSONL_SUFFIXES, ".json", ".csv", ".parquet")
# Cells of CSV/Parquet that hold nested data as JSON text.
_STRUCTURED = ("messages", "conversations", "prompt", "chosen", "rejected", "completion")
_SKIP_CHUNK = 1 << 20


@dataclass(slots=True)
class Record:
    line: int  # 1-based line (JSONL, CSV) or row number (JSON array, Parquet, datasets)
    value: dict[str, Any] | None
    error: tuple[str, str] | None = None  # (reason, detail)
    raw: Any = None  # what to show in rejects when value is None


def resolve_path(src: SourceSpec, base_dir: Path) -> Path:
    p = Path(src.path or src.disk or "").expanduser()
    return p if p.is_absolute() else (base_dir / p)


def iter_records(src: SourceSpec, base_dir: Path, max_line_bytes: int) -> Iterator[Record]:
    if src.hub:
        yield from _iter_datasets(_load_hub(src), src.label)
        return
    path = resolve_path(src, base_dir)
    if src.disk:
        yield from _iter_datasets(_load_disk(src, path), src.label)
        return
    if not path.is_file():
        raise DataPrepError(f"data file not found: {path} (source {src.path!r}, relative to {base_dir})")
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        yield from _iter_jsonl(path, max_line_bytes)
    elif name.endswith(".json"):
        yield from _iter_json(path, max_line_bytes)
    elif name.endswith(".csv"):
        yield from _iter_csv(path, max_line_bytes)
    elif name.endswith(".parquet"):
        yield from _iter_parquet(path)
    else:
        raise DataPrepError(f"unknown data file type: {path} (expected one of {', '.join(SUFFIXES)})")


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _iter_jsonl(path: Path, max_line_bytes: int) -> Iterator[Record]:
    with _open_binary(path) as f:
        yield from _jsonl_lines(f, max_line_bytes)


def _jsonl_lines(f: IO[bytes], max_line_bytes: int, first_line: int = 1) -> Iterator[Record]:
    lineno = first_line - 1
    while True:
        # readline(limit) bounds memory: a 10 MB line is never read in one piece.
        chunk = f.readline(max_line_bytes + 1)
        if not chunk:
            return
        lineno += 1
        if len(chunk) > max_line_bytes and not chunk.endswith(b"\n"):
            size, head = len(chunk), chunk[:400]
            while not chunk.endswith(b"\n"):
                chunk = f.readline(_SKIP_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
            detail = f"line is {size} bytes, over max_line_bytes={max_line_bytes}"
            yield Record(lineno, None, ("line_too_long", detail), head)
            continue
        if not chunk.strip():
            continue
        yield _parse_json_line(lineno, chunk)


def _parse_json_line(lineno: int, chunk: bytes) -> Record:
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError as e:
        return Record(lineno, None, ("invalid_utf8", f"invalid UTF-8 at byte {e.start}"), chunk)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return Record(lineno, None, ("invalid_json", f"{e.msg} (column {e.colno})"), text)
    except RecursionError:
        return Record(lineno, None, ("invalid_json", "nesting too deep"), text)
    if not isinstance(value, dict):
        return Record(
            lineno, None, ("not_an_object", f"expected a JSON object, got {type(value).__name__}"), text
        )
    if "\\u" in text and has_lone_surrogates(json.dumps(value, ensure_ascii=False, default=str)):
        return Record(lineno, None, ("invalid_unicode", "a \\uD800-\\uDFFF escape with no pair (no UTF-8 for it)"), text)
    return Record(lineno, value)


def _iter_json(path: Path, max_line_bytes: int) -> Iterator[Record]:
    # `.json` is either one array of objects, or JSON Lines under a .json name
    # (what `datasets.to_json` writes); the first significant byte tells which.
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
        f.seek(0)
        if not head.startswith(b"["):
            yield from _jsonl_lines(f, max_line_bytes)
            return
        raw = f.read()
    try:
        items = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataPrepError(f"{path} is not valid JSON: {e}") from None
    except RecursionError:
        raise DataPrepError(f"{path} is not valid JSON: nesting too deep") from None
    for i, item in enumerate(items, start=1):
        if isinstance(item, dict) and has_lone_surrogates(json.dumps(item, ensure_ascii=False, default=str)):
            yield Record(i, None, ("invalid_unicode", "a \\uD800-\\uDFFF escape with no pair (no UTF-8 for it)"),
                         item)
        elif isinstance(item, dict):
            yield Record(i, item)
        else:
            yield Record(
                i, None, ("not_an_object", f"expected a JSON object, got {type(item).__name__}"), item
            )


def _decode_cell(key: str, value: Any) -> Any:
    if key in _STRUCTURED and isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):  # left as text: the row's format check rejects it
            return value
    return value


def _iter_csv(path: Path, max_line_bytes: int) -> Iterator[Record]:
    # The csv module bounds a field, not a row; a field over the limit becomes
    # an `invalid_csv` reject. The limit is process-wide, so put it back after.
    previous = csv.field_size_limit(max_line_bytes)
    try:
        yield from _csv_records(path)
    finally:
        csv.field_size_limit(previous)


def _csv_records(path: Path) -> Iterator[Record]:
    with open(path, "rb") as fb:
        # surrogateescape keeps bad bytes visible per row instead of failing the file.
        text = io.TextIOWrapper(fb, encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataPrepError(f"{path}: unreadable CSV header: {e}") from None
        header = [h.lstrip("\ufeff") for h in header]
        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield Record(start, None, ("invalid_csv", str(e)), "")
                start = reader.line_num + 1
                continue
            line, start = start, reader.line_num + 1
            if not cells:
                continue
            raw = ",".join(cells)
            if any(has_lone_surrogates(c) for c in cells):
                yield Record(
                    line,
                    None,
                    ("invalid_utf8", "invalid UTF-8 in a CSV cell"),
                    raw.encode("utf-8", "replace"),
                )
            elif len(cells) != len(header):
                detail = f"{len(cells)} fields, header has {len(header)}"
                yield Record(line, None, ("csv_field_count", detail), raw)
            else:
                yield Record(line, {k: _decode_cell(k, v) for k, v in zip(header, cells, strict=True)})


def _iter_parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise DataPrepError(f"{path} is not a readable Parquet file: {_first_line(e)}") from None
    i = 0
    batches = pf.iter_batches(batch_size=1024)
    while True:
        try:  # a damaged page shows only when it is read
            batch = next(batches)
        except StopIteration:
            return
        except Exception as e:
            raise DataPrepError(f"{path} is not a readable Parquet file: {_first_line(e)} (after row {i})") from None
        for item in batch.to_pylist():
            i += 1
            yield Record(i, {k: _decode_cell(k, v) for k, v in item.items()})


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _load_hub(src: SourceSpec) -> Any:
    import datasets

    try:
        return datasets.load_dataset(src.hub, src.subset, split=src.split)
    except Exception as e:
        raise DataPrepError(
            f"could not load hub dataset {src.hub!r} (split {src.split!r}): {type(e).__name__}: {e}",
            problems=[
                "offline machines can only read datasets already in the local Hugging Face cache;",
                "save it once with `save_to_disk` and use `disk:` instead, or export it to JSONL/Parquet",
            ],
        ) from None


def _load_disk(src: SourceSpec, path: Path) -> Any:
    import datasets

    if not path.is_dir():
        raise DataPrepError(f"dataset folder not found: {path} (source {src.disk!r})")
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise DataPrepError(f"{path} is not a `save_to_disk` dataset: {type(e).__name__}: {e}") from None
    if isinstance(ds, datasets.DatasetDict):
        if src.split not in ds:
            raise DataPrepError(f"{path} has no split {src.split!r}; it has {sorted(ds)}")
        ds = ds[src.split]
    return ds


def _iter_datasets(ds: Any, label: str) -> Iterator[Record]:
    for i, item in enumerate(ds, start=1):
        yield Record(i, {k: _decode_cell(k, v) for k, v in dict(item).items()})
