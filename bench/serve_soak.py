#!/usr/bin/env python3
"""Soak test for `slimlm serve`: N requests (default 1000; short greedy completions, a mix of
streamed and whole answers, some with n=2, some abandoned mid-stream) from C concurrent
clients; the server's resident memory (VmRSS) is sampled after the first 10% of the requests
(everything warmed up) and at the end. Memory growth between the two, per request, says
whether anything leaks per request. Prints one line and writes JSON.

usage: bench/serve_soak.py [--bin build/slimlm] [--model PATH] [--requests 1000] [--clients 8] [--json FILE]
"""
import argparse
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_load import PROMPTS, Server, default_model  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def one(srv, i):
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=120)
    body = {"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": 8, "temperature": 0 if i % 3 else 0.8, "seed": i,
            "n": 2 if i % 7 == 0 else 1, "stream": i % 2 == 0}
    c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if body["stream"] and i % 10 == 0:
        r.readline()  # abandon the stream after its first line
        c.close()
        return r.status
    r.read()
    c.close()
    return r.status


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("BIN", "build/slimlm"))
    ap.add_argument("--model")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    args.model = args.model or default_model()
    args.url, args.ctx, args.max_seqs = None, 256, 16
    srv = Server(args, [])
    lock = threading.Lock()
    state = {"next": 0, "done": 0, "bad": 0, "rss_warm": None}
    t0 = time.time()

    def worker():
        while True:
            with lock:
                i = state["next"]
                if i >= args.requests:
                    return
                state["next"] += 1
            try:
                st = one(srv, i)
            except Exception:  # noqa: BLE001
                st = -1
            with lock:
                state["done"] += 1
                state["bad"] += st != 200
                if state["done"] == args.requests // 10:
                    state["rss_warm"] = rss_kib(srv.proc.pid)

    ts = [threading.Thread(target=worker) for _ in range(args.clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    srv.wait_idle()
    rss_end = rss_kib(srv.proc.pid)
    el = time.time() - t0
    srv.stop()
    growth = rss_end - state["rss_warm"]
    res = {"requests": args.requests, "clients": args.clients, "failed": state["bad"], "seconds": round(el, 1),
           "rss_warm_kib": state["rss_warm"], "rss_end_kib": rss_end, "growth_kib": growth,
           "growth_per_request_bytes": round(1024 * growth / max(1, args.requests - args.requests // 10), 1)}
    print(f"soak: {args.requests} requests ({state['bad']} failed) in {el:.0f}s; RSS {state['rss_warm']} KiB after "
          f"10%, {rss_end} KiB at the end: {growth:+d} KiB ({res['growth_per_request_bytes']} B per request)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 1 if state["bad"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
