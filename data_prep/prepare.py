"""One dataset from recipe spec to curated files, in named phases.

`prepare_dataset` runs: load sources (reading and normalizing each record into
the canonical row of the dataset's kind) -> the curate steps, in recipe order
-> mix the sources by weight -> split off held-out rows -> write. Each phase
that changes the row count leaves a `StepRecord`; the report reads those.

Output folder (written atomically, `report.json` last, so its presence with the
right fingerprint means the rest is complete):
  train.jsonl, eval.jsonl (if eval_split), rejects.jsonl, report.json, report.md, lengths.png
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.cache import dataset_fingerprint, texts_fingerprint, tokenizer_id
from data_prep.errors import DataPrepError
from data_prep.formats import RowError, read_record
from data_prep.mixing import MixResult, mix, shuffle_and_split
from data_prep.operators import OpContext, run_step, step_name
from data_prep.records import PreparedDataset, StepRecord
from data_prep.rejects import RejectLog
from data_prep.report import length_stats, render_report, write_length_plot, write_markdown
from data_prep.rows import Row, atomic_writer, write_jsonl
from data_prep.sources import iter_records
from data_prep.spec import DatasetSpec, SourceSpec

__all__ = ["PreparedDataset", "StepRecord", "load_prepared", "prepare_dataset"]


def prepare_dataset(
    name: str,
    spec: DatasetSpec,
    *,
    base_dir: Path,
    out_dir: Path,
    tokenizer: Any = None,
    eval_texts: Sequence[str] = (),
    seed: int = 0,
    console: Any = None,
) -> PreparedDataset:
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    if spec.uses_tokenizer and tokenizer is None:
        raise DataPrepError(
            f"dataset {name!r}: a token-length filter is configured but no tokenizer was given"
        )
    fingerprint = dataset_fingerprint(
        spec,
        base_dir=base_dir,
        tokenizer_id=tokenizer_id(tokenizer),
        eval_fingerprint=texts_fingerprint(eval_texts) if spec.uses_eval else None,
        seed=seed,
    )
    cached = load_prepared(name, out_dir, fingerprint)
    if cached is not None:
        if console is not None:
            console.print(f"[dim]dataset {name}: cached ({fingerprint[:12]}) in {out_dir}[/dim]")
        return cached
    # A stale report.json beside new partial files would look finished.
    (out_dir / "report.json").unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    log = RejectLog()
    loaded = _load_sources(spec, base_dir, log)
    _check_rejects(name, spec, log, loaded.read, out_dir)
    load_step = loaded.record(log, seconds=round(time.perf_counter() - started, 3))
    ctx = OpContext(kind=spec.kind, base_dir=base_dir, tokenizer=tokenizer, eval_texts=eval_texts, seed=seed)
    curated, curate_steps = _curate(loaded.rows, spec, ctx, log)
    mixed, mix_step = _mix(curated, spec, seed, log)
    train, evals = shuffle_and_split(mixed.rows, shuffle=spec.shuffle, eval_split=spec.eval_split, seed=seed)
    prepared = _write(
        name,
        spec,
        out_dir,
        fingerprint=fingerprint,
        seed=seed,
        tokenizer=tokenizer,
        log=log,
        loaded=loaded,
        steps=[load_step, *curate_steps, mix_step],
        added=mixed.added + loaded.split,
        train=train,
        evals=evals,
        started=started,
    )
    if console is not None:
        console.print(render_report(prepared))
    return prepared


def load_prepared(name: str, out_dir: Path, fingerprint: str | None = None) -> PreparedDataset | None:
    """The finished dataset in `out_dir`, if there is one (with this fingerprint, when given)."""
    try:
        report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if fingerprint is not None and report.get("fingerprint") != fingerprint:
        return None
    train_path = out_dir / report["files"]["train"]
    eval_name = report["files"].get("eval")
    eval_path = out_dir / eval_name if eval_name else None
    if not train_path.is_file() or (eval_path is not None and not eval_path.is_file()):
        return None
    return PreparedDataset(
        name, report["kind"], train_path, eval_path, report["train_rows"], report, report["fingerprint"]
    )


# ---------------------------------------------------------------- phase 1: load sources, normalize


@dataclass
class _Loaded:
    rows: list[Row]
    sources: list[dict[str, Any]]  # per-source counts for the report
    read: int  # records read, malformed ones included
    split: int  # rows added by splitting preference pairs into unpaired rows

    def record(self, log: RejectLog, *, seconds: float) -> StepRecord:
        return StepRecord(
            step="load",
            rows_in=self.read,
            removed=log.malformed(),
            rows_out=len(self.rows),
            reasons=log.malformed_reasons(),
            details={"pairs_split": self.split} if self.split else {},
            seconds=seconds,
        )


def _load_sources(spec: DatasetSpec, base_dir: Path, log: RejectLog) -> _Loaded:
    loaded = _Loaded(rows=[], sources=[], read=0, split=0)
    for i, src in enumerate(spec.sources):
        source = src.label
        read = bad = split = 0
        formats: Counter[str] = Counter()  # detected format -> records read in it
        for rec in iter_records(src, base_dir, spec.max_line_bytes):
            read += 1
            if rec.value is None:
                reason, detail = rec.error or ("unreadable", "")
                log.add(
                    source=source, line=rec.line, operator="load", reason=reason, detail=detail, row=rec.raw
                )
                bad += 1
                continue
            try:
                fmt, datas = _normalize(rec.value, src, spec)
            except RowError as e:
                log.add(
                    source=source,
                    line=rec.line,
                    operator="format",
                    reason=e.reason,
                    detail=e.detail,
                    row=rec.value,
                )
                bad += 1
                continue
            formats[fmt] += 1
            split += len(datas) - 1
            loaded.rows.extend(Row(data, source, rec.line, i) for data in datas)
        loaded.sources.append(
            {
                "source": source,
                "read": read,
                "malformed": bad,
                "loaded": read - bad,
                "split": split,
                "formats": dict(formats.most_common()),
            }
        )
        loaded.read += read
        loaded.split += split
    return loaded


def _normalize(value: dict[str, Any], src: SourceSpec, spec: DatasetSpec) -> tuple[str, list[dict[str, Any]]]:
    """(detected format, canonical rows) of one record; raises RowError when it fits no format."""
    record = {src.columns.get(k, k): v for k, v in value.items()} if src.columns else value
    return read_record(record, src.format, spec.kind)


def _check_rejects(name: str, spec: DatasetSpec, log: RejectLog, read: int, out_dir: Path) -> None:
    bad = log.malformed()
    if read == 0:
        raise DataPrepError(
            f"dataset {name!r}: the sources hold no rows", problems=[s.label for s in spec.sources]
        )
    if bad / read <= spec.max_reject_fraction:
        return
    write_jsonl(out_dir / "rejects.jsonl", log.entries)
    reasons = ", ".join(f"{k} {v}" for k, v in log.malformed_reasons().items())
    examples = [f"{e['source']}:{e['line']}: {e['reason']}: {e['detail']}" for e in log.entries[:5]]
    raise DataPrepError(
        f"dataset {name!r}: {bad} of {read} rows ({bad / read:.0%}) are malformed, over "
        f"max_reject_fraction={spec.max_reject_fraction} ({reasons}); all of them are in "
        f"{out_dir / 'rejects.jsonl'}",
        problems=examples,
    )


# ---------------------------------------------------------------- phase 2: curate steps


def _curate(
    rows: list[Row], spec: DatasetSpec, ctx: OpContext, log: RejectLog
) -> tuple[list[Row], list[StepRecord]]:
    records = []
    for step in spec.curate:
        op = step_name(step)
        t0 = time.perf_counter()
        result = run_step(step, rows, ctx)
        if len(result.kept) + len(result.removed) != len(rows):
            # Operators are plug-ins: one that loses or invents rows would make the report lie.
            raise DataPrepError(
                f"curation operator {op!r} returned {len(result.kept)} kept + {len(result.removed)} removed "
                f"rows for {len(rows)} rows in; it must keep every row or remove it with a reason"
            )
        reasons: Counter[str] = Counter()
        for row, reason, detail in result.removed:
            log.add(source=row.source, line=row.line, operator=op, reason=reason, detail=detail, row=row.data)
            reasons[reason] += 1
        records.append(
            StepRecord(
                step=op,
                spec=step.model_dump(mode="json"),
                rows_in=len(rows),
                removed=len(result.removed),
                rows_out=len(result.kept),
                reasons=dict(reasons.most_common()),
                details=result.details,
                seconds=round(time.perf_counter() - t0, 3),
            )
        )
        rows = result.kept
    return rows, records


# ---------------------------------------------------------------- phase 3: mix sources


def _mix(rows: list[Row], spec: DatasetSpec, seed: int, log: RejectLog) -> tuple[MixResult, StepRecord]:
    mixed = mix(rows, spec, seed)
    for row in mixed.dropped:
        log.add(
            source=row.source,
            line=row.line,
            operator="mix",
            reason="not_sampled",
            detail="left out by the source's weight / max_rows",
            row=row.data,
        )
    record = StepRecord(
        step="mix",
        rows_in=len(rows),
        removed=len(mixed.dropped),
        rows_out=len(mixed.rows),
        reasons={"not_sampled": len(mixed.dropped)} if mixed.dropped else {},
        details={"repeats_added": mixed.added, "sources": mixed.per_source},
    )
    return mixed, record


# ---------------------------------------------------------------- phase 5: write
# (phase 4, splitting off held-out rows, is mixing.shuffle_and_split)


def _write(
    name: str,
    spec: DatasetSpec,
    out_dir: Path,
    *,
    fingerprint: str,
    seed: int,
    tokenizer: Any,
    log: RejectLog,
    loaded: _Loaded,
    steps: list[StepRecord],
    added: int,
    train: list[Row],
    evals: list[Row],
    started: float,
) -> PreparedDataset:
    train_path = out_dir / "train.jsonl"
    eval_path = out_dir / "eval.jsonl" if spec.eval_split > 0 else None
    write_jsonl(train_path, (r.data for r in train))
    if eval_path is not None:
        write_jsonl(eval_path, (r.data for r in evals))
    write_jsonl(out_dir / "rejects.jsonl", log.entries)

    final = [r.data for r in train + evals]
    lengths, unit = _lengths(final, spec.kind, tokenizer)
    balance = _balance(loaded.read, log.malformed(), steps, added, out=len(final))
    report = {
        "name": name,
        "kind": spec.kind,
        "fingerprint": fingerprint,
        "seed": seed,
        "sources": loaded.sources,
        "steps": [s.to_json() for s in steps],
        "balance": balance,
        "train_rows": len(train),
        "eval_rows": len(evals),
        "lengths": length_stats(lengths, unit),
        "examples": {op: ex for op, ex in log.examples.items()},
        "seconds": round(time.perf_counter() - started, 3),
        "files": {
            "train": train_path.name,
            "eval": eval_path.name if eval_path else None,
            "rejects": "rejects.jsonl",
            "plot": "lengths.png",
            "markdown": "report.md",
        },
    }
    write_length_plot(out_dir / "lengths.png", lengths, unit, f"{name}: {unit} per row")
    write_markdown(out_dir / "report.md", report)
    with atomic_writer(out_dir / "report.json") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
    return PreparedDataset(name, spec.kind, train_path, eval_path, len(train), report, fingerprint)


def _balance(read: int, malformed: int, steps: list[StepRecord], added: int, *, out: int) -> dict[str, Any]:
    """read = out + malformed + removed - added, or a DataPrepError: a report never shows counts that
    do not add up."""
    balance: dict[str, Any] = {
        "read": read,
        "malformed": malformed,
        "removed": sum(s.removed for s in steps if s.step != "load"),
        # Rows that did not come from reading a record: mix repeats, and the second
        # row of each preference pair split into two unpaired rows.
        "added": added,
        "out": out,
    }
    balance["ok"] = read == out + malformed + balance["removed"] - added
    if not balance["ok"]:
        # Every operator's counts were checked as it ran, so this is a data_prep bug.
        raise DataPrepError(f"row counts do not add up (a data_prep bug, please report it): {balance}")
    return balance


def _lengths(rows: list[dict[str, Any]], kind: str, tokenizer: Any) -> tuple[list[int], str]:
    if tokenizer is not None:
        from data_prep.operators.length import count_tokens

        return count_tokens(rows, kind, tokenizer), "tokens"
    from data_prep.rows import texts

    return [sum(len(t.split()) for t in texts(r, kind)) for r in rows], "words"
