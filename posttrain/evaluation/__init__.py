"""Evaluation: the shipped lm-eval suite run in process, and the leaderboard.

lm-eval itself is imported only when a model is evaluated, so importing this
package stays cheap.
"""

from posttrain.evaluation.leaderboard import StageScores, markdown_table, record, rich_table, top
from posttrain.evaluation.runner import evaluate_model, headline
from posttrain.evaluation.suite import available_tasks, resolve_tasks, task_documents

__all__ = [
    "StageScores",
    "available_tasks",
    "evaluate_model",
    "headline",
    "markdown_table",
    "record",
    "resolve_tasks",
    "rich_table",
    "task_documents",
    "top",
]
