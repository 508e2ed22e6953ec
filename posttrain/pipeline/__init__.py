"""The pipeline: plan the stage DAG, fingerprint, run or reuse each stage, evaluate, export."""
