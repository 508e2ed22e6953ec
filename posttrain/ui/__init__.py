"""`posttrain ui`: a local dashboard over a runs folder and a recipes folder.

`server.py` builds the FastAPI app and runs it under uvicorn; `files.py` is the only way a
request names a file (inside the runs or recipes folder, else 404); `runs.py` reads live run
status from run directories' files; `views.py` writes the static report, compare and board
pages with `posttrain.report`; `chat.py` loads models to chat with and unloads idle ones;
`jobs.py` starts and stops `posttrain run` subprocesses. The pages are `static/`.
"""
