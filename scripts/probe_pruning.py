"""How much a pruned student of a trained stage loses before any distillation: even vs influence layers
(depth), and fewer MLP neurons in every layer (width).

    python scripts/probe_pruning.py runs/quickstart sft [--data chat] [--fractions 0.67 0.8] [--mlp-fractions 0.57]

Loads the stage's model (base + its adapters), measures each layer's influence on the first 32 training
rows of the dataset (what `student: {select: influence}` does), and prints, per kept fraction and selection,
the kept layers, the parameter count and the held-out answer loss (mean NLL per answer token on the
dataset's eval split), next to the teacher's; then the same for each `--mlp-fractions` width
(`student: {mlp_keep_fraction: ...}`, neurons chosen on the same rows), and refit by least squares on the
first 128 rows (`mlp_refit: true`). Read-only: the run directory is not changed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("stage")
    parser.add_argument("--data", default="chat", help="dataset name under the run's data/ folder")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.67, 0.8])
    parser.add_argument("--mlp-fractions", type=float, nargs="*", default=[0.57], help="MLP widths to keep")
    args = parser.parse_args()

    from posttrain.distill import prune
    from posttrain.models.lineage import materialize
    from posttrain.models.loading import load_tokenizer
    from posttrain.run_layout import RunDir
    from posttrain.training.objectives import batches, completion_logps, encode_completion, token_loss

    run = RunDir(args.run_dir)
    lineage = run.lineage(args.stage)
    teacher = materialize(lineage, dtype="float32").eval()
    tokenizer = load_tokenizer(lineage.base)
    data = run.data_dir(args.data)

    def encoded(name: str, limit: int | None = None) -> list:
        rows = [json.loads(line) for line in (data / name).read_text().splitlines() if line.strip()][:limit]
        return [encode_completion(tokenizer, r["messages"][:-1], r["messages"][-1]["content"], max_length=256)
                for r in rows]

    held_out = encoded("eval.jsonl")

    def answer_loss(model: object) -> float:
        per_row = token_loss(completion_logps(model, held_out, pad_id=tokenizer.pad_token_id))
        return sum(per_row.values) / sum(per_row.weights)

    from posttrain.distill.models import CALIBRATION_ROWS, REFIT_CALIBRATION_ROWS

    calibration = list(batches(encoded("train.jsonl", CALIBRATION_ROWS), 8, tokenizer.pad_token_id))
    influence = prune.layer_influence(teacher, calibration)
    layers = len(influence)
    total = sum(p.numel() for p in teacher.parameters())
    print("layer influence:", " ".join(f"{v:.3f}" for v in influence))
    print(f"teacher: {layers} layers, {total / 1e6:.1f}M parameters, held-out answer loss {answer_loss(teacher):.3f}")
    for fraction in args.fractions:
        count = max(1, min(layers, round(fraction * layers)))
        for select, keep in (("even", prune.layers_to_keep(layers, keep_fraction=fraction)),
                             ("influence", prune.most_influential_layers(influence, count))):
            student = prune.prune_layers(teacher, keep)
            params = sum(p.numel() for p in student.parameters())
            print(f"keep {fraction:.2f} {select:9s} {len(keep)} layers {params / total:.1%} of parameters, "
                  f"held-out answer loss {answer_loss(student):.3f}  layers {keep}")
    refit_rows = list(batches(encoded("train.jsonl", REFIT_CALIBRATION_ROWS), 8, tokenizer.pad_token_id))
    copied = prune.mlp_neuron_importance(teacher, calibration)
    refit = (prune.mlp_neuron_importance(teacher, refit_rows), prune.mlp_activation_grams(teacher, refit_rows))
    width = int(copied[0].numel())
    for fraction in args.mlp_fractions:
        kept = prune.mlp_neurons_to_keep(width, fraction)
        for how, (importance, grams) in (("copied", (copied, None)), ("refit", refit)):
            student = prune.prune_layers(teacher, list(range(layers)))
            prune.prune_mlp_width(student, importance, kept, refit_grams=grams)
            params = sum(p.numel() for p in student.parameters())
            print(f"mlp {fraction:.2f} width {how:6s} {kept}/{width} neurons {params / total:.1%} of parameters, "
                  f"held-out answer loss {answer_loss(student):.3f}")


if __name__ == "__main__":
    main()
