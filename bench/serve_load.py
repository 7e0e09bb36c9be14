#!/usr/bin/env python3
"""Load test for `slimlm serve`: C concurrent clients (default 1, 4, 16, 64), each sending
streamed greedy completions (a fixed prompt set, max_tokens 64, end-of-text ignored so every
request is 64 tokens) back to back for a bounded time, against the server with continuous
batching and the same server with --no-batching.

Validates first: every prompt's greedy text is fetched alone, and every request completed
under load must give the same text (greedy output does not depend on the batch).

Reports per (mode, clients): generated tokens/s (from the server's
slimlm_tokens_generated_total over the window, so requests cut at the end count too),
completed requests, p50/p99 request latency and time to first token. A level runs at least
--duration seconds, then on until as many requests have completed as there are clients (at
most --max-duration); requests still running at the end are cut and left out of the
percentiles. Prints a table and writes JSON.

usage: bench/serve_load.py [--bin build/slimlm] [--model PATH] [--url URL] [--clients 1,4,16,64]
       [--duration S] [--max-duration S] [--max-tokens N] [--threads N]
       [--modes batching,no-batching] [--json FILE] [--prompt TEXT]... [--prompt-file FILE]...
       [--server-args "FLAGS"]
With --url, the running server at URL is measured (one mode, as it was started).
--prompt / --prompt-file (each repeatable; a file's whole text is one prompt) replace the
built-in prompt set; --server-args adds flags to every server started (e.g. "--lookup 3
--draft-max 4" to measure speculative decoding).
"""
import argparse
import http.client
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.parse

PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a",
    "The three primary colors are",
    "To make a cup of tea, first",
    "def fibonacci(n):",
    "The largest planet in our solar system",
    "Water boils at a temperature of",
    "The quick brown fox",
]


def default_model():
    out = subprocess.run(["scripts/fetch-model.sh"], capture_output=True, text=True)
    return out.stdout.strip()


class Server:
    def __init__(self, args, extra):
        self.proc = None
        if args.url:
            u = urllib.parse.urlparse(args.url)
            self.host, self.port = u.hostname, u.port
            return
        cmd = [args.bin, "serve", "-m", args.model, "--port", "0", "-c", str(args.ctx), "--max-seqs",
               str(args.max_seqs)] + (["-t", str(args.threads)] if args.threads > 0 else []) + extra + \
            shlex.split(args.server_args)
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        self.host = "127.0.0.1"
        self.port = None
        t0 = time.time()
        while time.time() - t0 < 60:
            line = self.proc.stderr.readline()
            if not line:
                break
            m = re.match(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.proc.kill()
            raise SystemExit("server did not start: " + " ".join(cmd))
        # keep draining stderr so the server never blocks on it
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def metrics(self):
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        vals = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.split()[:2]
                vals[name] = float(value)
        return vals

    def wait_idle(self, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            m = self.metrics()
            if m.get("slimlm_requests_running", 0) == 0 and m.get("slimlm_requests_queued", 0) == 0:
                return True
            time.sleep(0.1)
        return False

    def stream(self, prompt, max_tokens, stop_flag=None):
        """One streamed greedy request: (text, latency s, ttft s) or None if cut short."""
        c = http.client.HTTPConnection(self.host, self.port, timeout=600)
        body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "stream": True}
        t0 = time.perf_counter()
        c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            r.read()
            c.close()
            raise RuntimeError(f"status {r.status}")
        text, ttft, done = [], None, False
        while True:
            if stop_flag is not None and stop_flag.is_set():
                break
            line = r.readline()
            if not line:
                break
            if not line.startswith(b"data: "):
                continue
            payload = line[6:].strip()
            if payload == b"[DONE]":
                done = True
                break
            ch = json.loads(payload)
            piece = ch["choices"][0]["text"] if ch["choices"] else ""
            if piece and ttft is None:
                ttft = time.perf_counter() - t0
            text.append(piece)
        lat = time.perf_counter() - t0
        c.close()
        return ("".join(text), lat, ttft if ttft is not None else lat) if done else None


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def level(srv, clients, duration, max_duration, max_tokens, ref):
    srv.wait_idle()
    stop = threading.Event()
    lock = threading.Lock()
    done, mismatches, errors = [], [], []

    def worker(w):
        i = w
        while not stop.is_set():
            p = PROMPTS[i % len(PROMPTS)]
            i += clients
            try:
                r = srv.stream(p, max_tokens, stop)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(str(e))
                time.sleep(0.1)
                continue
            if r is None:
                continue
            with lock:
                done.append(r)
                if r[0] != ref[p]:
                    mismatches.append(p)

    m0 = srv.metrics()
    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(clients)]
    for t in ts:
        t.start()
    # At least `duration` seconds, longer (up to max_duration) until `clients` requests have
    # completed, so that the percentiles are not only those of the first requests served.
    while True:
        time.sleep(0.2)
        el = time.perf_counter() - t0
        with lock:
            n_done = len(done)
        if el >= max_duration or (el >= duration and n_done >= clients):
            break
    m1 = srv.metrics()
    window = time.perf_counter() - t0
    stop.set()
    for t in ts:
        t.join(timeout=60)
    gen = m1.get("slimlm_tokens_generated_total", 0) - m0.get("slimlm_tokens_generated_total", 0)
    lats = [d[1] for d in done]
    ttfts = [d[2] for d in done]
    return {
        "clients": clients,
        "window_s": round(window, 2),
        "tokens": int(gen),
        "tokens_per_s": round(gen / window, 2),
        "requests_completed": len(done),
        "latency_p50_s": round(pct(lats, 50), 3),
        "latency_p99_s": round(pct(lats, 99), 3),
        "ttft_p50_s": round(pct(ttfts, 50), 3),
        "ttft_p99_s": round(pct(ttfts, 99), 3),
        "mismatches": len(mismatches),
        "errors": len(errors),
        # KV memory under load (the last step before the end of the window)
        "kv_waste_paged": round(m1.get("slimlm_kv_waste_paged_ratio", 0), 4),
        "kv_waste_reserved": round(m1.get("slimlm_kv_waste_reserved_ratio", 0), 4),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("BIN", "build/slimlm"))
    ap.add_argument("--model")
    ap.add_argument("--url")
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--duration", type=float, default=12.0, help="seconds of load per level")
    ap.add_argument("--max-duration", type=float, default=30.0,
                    help="seconds per level at most while waiting for every client to finish a request")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="engine threads (0: all CPUs)")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--max-seqs", type=int, default=64)
    ap.add_argument("--modes", default="batching,no-batching")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable; replaces the built-in set)")
    ap.add_argument("--prompt-file", action="append", default=[], help="a file whose text is one prompt (repeatable)")
    ap.add_argument("--server-args", default="", help="extra flags for the servers started")
    args = ap.parse_args()
    if args.prompt or args.prompt_file:
        PROMPTS[:] = list(args.prompt)
        for path in args.prompt_file:
            with open(path, encoding="utf-8") as f:
                PROMPTS.append(f.read())
    if not args.url and not args.model:
        args.model = default_model()
    clients = [int(x) for x in args.clients.split(",")]
    modes = ["url"] if args.url else args.modes.split(",")
    results = []
    for mode in modes:
        srv = Server(args, ["--no-batching"] if mode == "no-batching" else [])
        try:
            ref = {}
            for p in PROMPTS:  # validation reference: each prompt alone
                r = srv.stream(p, args.max_tokens)
                if r is None:
                    raise SystemExit(f"validation request for {p!r} did not complete")
                ref[p] = r[0]
            for c in clients:
                row = level(srv, c, args.duration, max(args.duration, args.max_duration), args.max_tokens, ref)
                row["mode"] = mode
                results.append(row)
                print(f"{mode:12s} C={c:<3d} {row['tokens_per_s']:8.1f} tok/s  {row['requests_completed']:4d} req  "
                      f"lat p50 {row['latency_p50_s']:.2f}s p99 {row['latency_p99_s']:.2f}s  "
                      f"ttft p50 {row['ttft_p50_s']:.2f}s p99 {row['ttft_p99_s']:.2f}s  "
                      f"mismatch {row['mismatches']} err {row['errors']}", file=sys.stderr, flush=True)
        finally:
            srv.stop()
    hdr = f"{'mode':12s} {'clients':>7s} {'tok/s':>8s} {'reqs':>5s} {'lat p50':>8s} {'lat p99':>8s} " \
          f"{'ttft p50':>9s} {'ttft p99':>9s} {'mismatch':>8s} {'kv waste paged':>14s} {'reserved':>8s}"
    print(hdr)
    for r in results:
        print(f"{r['mode']:12s} {r['clients']:7d} {r['tokens_per_s']:8.1f} {r['requests_completed']:5d} "
              f"{r['latency_p50_s']:8.2f} {r['latency_p99_s']:8.2f} {r['ttft_p50_s']:9.2f} {r['ttft_p99_s']:9.2f} "
              f"{r['mismatches']:8d} {r['kv_waste_paged']:14.3f} {r['kv_waste_reserved']:8.3f}")
    if args.json:
        meta = {"max_tokens": args.max_tokens, "duration_s": args.duration, "threads": args.threads, "ctx": args.ctx,
                "model": args.model or args.url, "prompts": PROMPTS, "server_args": args.server_args}
        with open(args.json, "w") as f:
            json.dump({"config": meta, "results": results}, f, indent=1)
    bad = sum(r["mismatches"] + r["errors"] for r in results)
    if bad:
        print(f"validation: {bad} requests differed from their solo greedy text or failed", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
