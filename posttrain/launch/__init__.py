"""Training stages under `accelerate launch`: N processes on M machines, one stage at a time.

The orchestrating process (`posttrain run`) curates data, evaluates, exports
and keeps the leaderboard; for each training stage it writes a job file
(`job.py`), launches `python -m posttrain.launch.worker JOB` through
accelerate (`launcher.py`) and reads back the result or the failing rank's
error. Machines other than 0 only join each stage's launch (`follower.py`).
"""
