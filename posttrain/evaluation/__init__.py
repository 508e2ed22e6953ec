"""Evaluation: the lm-eval harness run in process (harness) on the shipped task suite (suite).

lm-eval itself is imported only when a model is evaluated, so importing this
package stays cheap.
"""
