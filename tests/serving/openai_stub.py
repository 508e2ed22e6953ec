"""A tiny real HTTP server standing in for an engine: answers /v1/models once `--ready-after` seconds have passed.

    python openai_stub.py --port P [--ready-after S] [--exit-after S] [--ignore-term] [--child]

With --child it forks a grandchild that sleeps (a server's worker), and writes
the child's pid to stdout; --ignore-term makes it ignore SIGTERM, as a hung
server would.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready-after", type=float, default=0.0)
    parser.add_argument("--exit-after", type=float, default=None)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.child:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(f"child {child.pid}", flush=True)
    started = time.monotonic()
    print(f"stub listening on {args.port}", flush=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/v1/models" and time.monotonic() - started >= args.ready_after:
                body = json.dumps({"data": [{"id": "stub"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_response(503)
                self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    if args.exit_after is not None:
        threading.Timer(args.exit_after, lambda: os._exit(3)).start()
    HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
