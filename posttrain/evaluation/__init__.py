"""Evaluation: lm-eval run in process (harness) on tasks named in a recipe (tasks: the shipped suite,
include folders, lm-eval's registry, stock tasks on local data), with per-document results (samples),
standard errors, intervals and paired tests (stats), read back for the leaderboard (record).

lm-eval itself is imported only when a model is evaluated or a registry task is looked up, so
importing this package stays cheap.
"""
