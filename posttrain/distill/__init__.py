"""Teacher→student distillation: divergences, depth pruning, student checks, the trainer, benchmarks.

The `distill` stage (posttrain/stages/distill.py) wires these together; each
module does one job and is tested on its own.
"""
