"""Judge concurrency benchmark: `longrl score` with the judge against a stub OpenAI-compatible server
that takes any number of requests at a fixed latency, with max_in_flight 1 and then N.

Target (issue 4): with N in flight the throughput is at least 0.8 x N times the serial rate.

    cargo xtask bench judge [--in-flight N] [--items K] [--latency-ms L] [--longrl PATH]

The rates are measured at the server (first request in to last reply out), so process start-up and
plugin loading do not count; the wall time of each `longrl score` run is printed beside them.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.first_in = None
            self.last_out = None
            self.count = 0
            self.in_flight = 0
            self.max_in_flight = 0


STATS = Stats()
LATENCY = 0.05


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server offers

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length))
        with STATS.lock:
            now = time.perf_counter()
            STATS.first_in = now if STATS.first_in is None else STATS.first_in
            STATS.in_flight += 1
            STATS.max_in_flight = max(STATS.max_in_flight, STATS.in_flight)
        time.sleep(LATENCY)
        assert body["temperature"] == 0, body
        reply = json.dumps({
            "id": "bench", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Same answer. [[YES]]"},
                         "finish_reason": "stop"}],
        }).encode()
        # Counted out before the reply leaves, so the client's next request never overlaps it here.
        with STATS.lock:
            STATS.in_flight -= 1
            STATS.count += 1
            STATS.last_out = time.perf_counter()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def write_data(path, items):
    with open(path, "w") as f:
        for i in range(items):
            f.write(json.dumps({
                # Distinct questions, so the verdict cache never answers.
                "response": f"<think>working</think>Therefore, the answer is candidate {i}.",
                "ground_truth": f"gold {i}",
                "data_source": "musique_v1",
                "prompt": f"<text>\ndoc\n</text>\n\nQuestion number {i}?\n\nFormat your response as follows: x",
            }) + "\n")


def write_config(path, in_flight):
    with open(path, "w") as f:
        f.write("[reward]\ncascade = true\n\n[[reward.components]]\nname = \"judge\"\n\n"
                f"[reward.components.config]\nmax_in_flight = {in_flight}\ntimeout_secs = 30.0\n")


def run(longrl, data, config, url, items, in_flight):
    STATS.reset()
    started = time.perf_counter()
    result = subprocess.run(
        [longrl, "score", "--config", config, "--data", data, "--judge-url", url, "--judge-model", "bench-judge",
         "--batch-size", str(items), "--log-level", "warn"],
        capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"longrl score failed ({result.returncode}):\n{result.stderr}")
    lines = [json.loads(l) for l in result.stdout.splitlines() if l.startswith("{")]
    judged = sum(1 for l in lines if str(l.get("decided_by", "")).startswith("judge.yes"))
    if STATS.count != items or judged != items:
        sys.exit(f"max_in_flight {in_flight}: the server saw {STATS.count} requests and {judged} items were judged "
                 f"yes; expected {items} of each.\nstdout head: {result.stdout[:500]}")
    span = STATS.last_out - STATS.first_in
    return items / span, wall, STATS.max_in_flight


def main():
    global LATENCY
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--longrl", default=os.path.join(ROOT, "target/release/longrl"))
    args = parser.parse_args()
    LATENCY = args.latency_ms / 1000.0

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.jsonl")
        write_data(data, args.items)
        rates = {}
        for n in (1, args.in_flight):
            config = os.path.join(tmp, f"judge-{n}.toml")
            write_config(config, n)
            rate, wall, seen = run(args.longrl, data, config, url, args.items, n)
            rates[n] = rate
            print(f"max_in_flight {n:>3}: {rate:8.1f} verdicts/s at the server "
                  f"(max {seen} in flight seen; `longrl score` wall {wall:.2f} s for {args.items} items)")
    server.shutdown()
    ratio = rates[args.in_flight] / rates[1]
    target = 0.8 * args.in_flight
    verdict = "PASS" if ratio >= target else "FAIL"
    print(f"speed-up {ratio:.1f}x with {args.in_flight} in flight; target >= {target:.1f}x (0.8 x N): {verdict}")
    print(f"(stub latency {args.latency_ms:.0f} ms per request; serial reference = {1000 / args.latency_ms:.1f}/s)")
    if verdict == "FAIL":
        sys.exit(1)


if __name__ == "__main__":
    main()
