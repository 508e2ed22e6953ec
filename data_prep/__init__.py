"""Data curation for posttrain recipes: load, normalize, dedup, filter, decontaminate, mix, report.

Entry point: `prepare_dataset(name, spec, base_dir=..., out_dir=...)` with a
`DatasetSpec` from the recipe's `datasets.<name>` block. Curation operators are
declared one per module in `data_prep/operators/` (`OPERATORS`; `register` adds
one from outside, after which `dataset_model()` validates steps that use it).
"""

from data_prep.cache import dataset_fingerprint, texts_fingerprint, tokenizer_id
from data_prep.prepare import load_prepared, prepare_dataset
from data_prep.records import PreparedDataset, StepRecord
from data_prep.report import render_report
from data_prep.rows import read_rows
from data_prep.spec import DatasetSpec, SourceSpec, dataset_model

__all__ = [
    "DatasetSpec",
    "PreparedDataset",
    "SourceSpec",
    "StepRecord",
    "dataset_fingerprint",
    "dataset_model",
    "load_prepared",
    "prepare_dataset",
    "read_rows",
    "render_report",
    "texts_fingerprint",
    "tokenizer_id",
]
