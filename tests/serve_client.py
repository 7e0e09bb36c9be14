#!/usr/bin/env python3
"""Checks `slimlm serve` over HTTP (stdlib only), against references computed independently:
`slimlm run --temp 0` for greedy text, the same request alone for batched results, the
non-streamed answer for streams.

usage: serve_client.py --url http://127.0.0.1:PORT --bin BIN --model MODEL [--ctx N]
       [--busy-url URL]
Prints one line per failure and ends with "serve_client: N passed, M failed".
"""
import argparse
import http.client
import json
import math
import re
import socket
import subprocess
import threading
import time
import urllib.parse

PASS = 0
FAIL = 0


def check(cond, what):
    global PASS, FAIL
    if cond:
        PASS += 1
    else:
        FAIL += 1
        print("FAIL:", what, flush=True)
    return cond


class Server:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port

    def conn(self, timeout=60):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, raw=None, headers=None):
        """(status, headers, body bytes)"""
        c = self.conn()
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        out = r.read()
        c.close()
        return r.status, r.getheaders(), out

    def post(self, path, body):
        st, _, out = self.request("POST", path, body)
        try:
            return st, json.loads(out)
        except ValueError:
            return st, {"_raw": out}

    def stream(self, path, body):
        """Streamed request: (status, list of parsed chunks, saw [DONE])."""
        c = self.conn()
        c.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        chunks, done = [], False
        if r.status != 200:
            r.read()
            c.close()
            return r.status, chunks, done
        buf = b""
        while True:
            line = r.readline()
            if not line:
                break
            buf += line
            if line in (b"\n", b"\r\n"):
                ev, buf = buf.strip(), b""
                if not ev.startswith(b"data: "):
                    continue
                payload = ev[6:]
                if payload == b"[DONE]":
                    done = True
                    continue
                chunks.append(json.loads(payload))
        c.close()
        return r.status, chunks, done

    def metrics(self):
        st, _, out = self.request("GET", "/metrics")
        return st, out.decode()


def parse_prometheus(text):
    """name -> value; raises ValueError on a malformed line."""
    vals, types = {}, {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$", line)
            if not m:
                raise ValueError("bad comment line: " + line)
            if m.group(1) == "TYPE":
                if m.group(3) not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    raise ValueError("bad type: " + line)
                types[m.group(2)] = m.group(3)
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)( -?\d+)?$", line)
        if not m:
            raise ValueError("bad sample line: " + line)
        vals[m.group(1)] = float(m.group(3))
    for name in vals:
        if name not in types:
            raise ValueError("no TYPE for " + name)
    return vals, types


def run_ref(args, prompt, n, chat=False):
    """Greedy text from `slimlm run` (the prompt echo and trailing newline removed)."""
    cmd = [args.bin, "run", "-m", args.model, "-p", prompt, "-n", str(n), "--temp", "0", "--no-stats", "-t", "1"]
    if chat:
        cmd.append("--chat")
    out = subprocess.run(cmd, capture_output=True, check=True).stdout.decode("utf-8", "replace")
    if not chat:
        assert out.startswith(prompt)
        out = out[len(prompt):]
    return out[:-1] if out.endswith("\n") else out


def completion(srv, prompt, n=16, **kw):
    body = {"prompt": prompt, "max_tokens": n, "temperature": 0}
    body.update(kw)
    return srv.post("/v1/completions", body)


PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a",
    "The three primary colors are",
    "To make a cup of tea, first",
    "def fibonacci(n):",
    "The largest planet in our solar system",
    "Water boils at a temperature of",
    "A haiku about the sea:",
    "The quick brown fox",
    "In 1969, the first humans",
    "My favourite food is",
    "Photosynthesis is the process by which",
    "The Pythagorean theorem states that",
    "1, 2, 3, 4, 5,",
    "Dear diary, today I",
    "The best way to learn a language is",
]


def test_basics(srv, args):
    st, _, out = srv.request("GET", "/health")
    check(st == 200 and json.loads(out) == {"status": "ok"}, f"/health: {st} {out[:100]}")
    st, _, out = srv.request("GET", "/v1/models")
    models = json.loads(out)
    check(st == 200 and models.get("object") == "list" and len(models.get("data", [])) == 1, f"/v1/models: {out[:200]}")
    mid = models["data"][0]["id"]
    check(mid == args.model.rsplit("/", 1)[-1], f"model id is the file name: {mid}")
    return mid


def test_greedy(srv, args, mid):
    prompt, n = PROMPTS[0], 24
    ref = run_ref(args, prompt, n)
    st, r = completion(srv, prompt, n, model=mid)
    check(st == 200, f"completion status {st}: {r}")
    if st != 200:
        return
    ch = r["choices"][0]
    check(ch["text"] == ref, f"greedy completion equals `slimlm run --temp 0`: {ch['text']!r} vs {ref!r}")
    check(r["object"] == "text_completion" and r["id"].startswith("cmpl-") and r["model"] == mid, f"shape: {r}")
    u = r["usage"]
    check(u["completion_tokens"] <= n and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], f"usage {u}")
    check(ch["finish_reason"] == ("length" if u["completion_tokens"] == n else "stop"), f"finish_reason {ch}")

    # The same prompt as token ids gives the same text.
    ids = subprocess.run([args.bin, "tokenize", "-m", args.model, "--ids", "--add-special", "-p", prompt],
                         capture_output=True)
    toks = [int(t) for t in re.findall(r"\d+", ids.stdout.decode())]
    check(ids.returncode == 0 and toks, f"tokenize --ids: {ids.stderr[:200]!r}")
    st, r2 = completion(srv, toks, n)
    check(st == 200 and r2["choices"][0]["text"] == ref, f"token-id prompt gives the same text: {r2}")

    # Streaming: the chunks put together equal the whole answer.
    st, chunks, done = srv.stream("/v1/completions", {"prompt": prompt, "max_tokens": n, "temperature": 0, "stream": True})
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    check(st == 200 and done, f"stream ends with [DONE] (status {st})")
    check(text == ref, f"streamed text equals the non-streamed one: {text!r} vs {ref!r}")
    check(len(chunks) >= 3, f"streamed in pieces ({len(chunks)} chunks)")
    check(chunks and chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop"), "last chunk has finish_reason")

    # Usage in the stream when asked for.
    st, chunks, done = srv.stream("/v1/completions", {"prompt": prompt, "max_tokens": 4, "temperature": 0, "stream": True,
                                                      "stream_options": {"include_usage": True}})
    check(done and chunks and chunks[-1].get("usage", {}).get("completion_tokens") == 4, f"usage chunk: {chunks[-1:]}")


def test_chat(srv, args):
    q, n = "What is the capital of France?", 20
    ref = run_ref(args, q, n, chat=True)
    body = {"messages": [{"role": "user", "content": q}], "max_tokens": n, "temperature": 0}
    st, r = srv.post("/v1/chat/completions", body)
    check(st == 200, f"chat status {st}: {r}")
    if st != 200:
        return
    msg = r["choices"][0]["message"]
    check(r["object"] == "chat.completion" and msg["role"] == "assistant", f"chat shape: {r}")
    check(msg["content"] == ref, f"chat equals `slimlm run --chat --temp 0`: {msg['content']!r} vs {ref!r}")
    body["stream"] = True
    st, chunks, done = srv.stream("/v1/chat/completions", body)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    text = "".join(d.get("content") or "" for d in deltas)
    check(done and deltas and deltas[0].get("role") == "assistant", "chat stream starts with the role and ends with [DONE]")
    check(text == ref, f"streamed chat equals the non-streamed one: {text!r} vs {ref!r}")
    check(all(c["object"] == "chat.completion.chunk" for c in chunks), "chunk objects")
    # A system message and a multi-turn conversation render and answer.
    st, r = srv.post("/v1/chat/completions", {"messages": [
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": [{"type": "text", "text": "Bye"}]}],
        "max_tokens": 4, "temperature": 0})
    check(st == 200 and r["usage"]["prompt_tokens"] > 10, f"multi-turn chat: {st} {r}")


def test_samples(srv):
    body = {"prompt": PROMPTS[1], "max_tokens": 12, "temperature": 1.0, "n": 3, "seed": 42}
    st, a = srv.post("/v1/completions", body)
    st2, b = srv.post("/v1/completions", body)
    check(st == 200 and st2 == 200, f"n=3 status {st} {st2}")
    if st != 200 or st2 != 200:
        return
    ta = [c["text"] for c in sorted(a["choices"], key=lambda c: c["index"])]
    tb = [c["text"] for c in sorted(b["choices"], key=lambda c: c["index"])]
    check(len(ta) == 3 and sorted(c["index"] for c in a["choices"]) == [0, 1, 2], f"3 choices: {a}")
    check(ta == tb, f"same seed, same samples: {ta} vs {tb}")
    check(len(set(ta)) > 1, f"samples differ from each other: {ta}")
    # Sample i uses seed + i: the second sample equals a single sample with seed 43.
    st, c = srv.post("/v1/completions", dict(body, n=1, seed=43))
    check(st == 200 and c["choices"][0]["text"] == ta[1], f"sample 1 of seed 42 == sample 0 of seed 43: {c} vs {ta[1]!r}")
    st, d = srv.post("/v1/completions", dict(body, seed=7))
    check(st == 200 and [x["text"] for x in sorted(d["choices"], key=lambda c: c["index"])] != ta, "another seed, other samples")
    # n > 1 streamed: every index gets a final chunk.
    st, chunks, done = srv.stream("/v1/completions", dict(body, stream=True))
    fin = sorted(ch["choices"][0]["index"] for ch in chunks if ch["choices"] and ch["choices"][0]["finish_reason"])
    joined = ["".join(ch["choices"][0]["text"] for ch in chunks if ch["choices"] and ch["choices"][0]["index"] == i)
              for i in range(3)]
    check(done and fin == [0, 1, 2], f"n=3 stream: a final chunk per sample: {fin}")
    check(joined == ta, f"n=3 stream equals the non-streamed samples: {joined} vs {ta}")


def test_stop(srv, args):
    prompt, n = PROMPTS[2], 32
    st, r = completion(srv, prompt, n)
    full = r["choices"][0]["text"] if st == 200 else ""
    check(len(full) > 12, f"reference text for stop strings: {full!r}")
    if len(full) <= 12:
        return
    for lo, hi in ((6, 9), (3, 4), (len(full) // 2, len(full) // 2 + 5)):
        stop = full[lo:hi]
        want = full[:full.find(stop)]
        st, r = completion(srv, prompt, n, stop=[stop, "\u2603never\u2603"])
        ch = r["choices"][0] if st == 200 else {}
        check(ch.get("text") == want and ch.get("finish_reason") == "stop",
              f"stop {stop!r}: text ends before it, finish stop: {ch} want {want!r}")
        st, chunks, done = srv.stream("/v1/completions", {"prompt": prompt, "max_tokens": n, "temperature": 0,
                                                          "stop": stop, "stream": True})
        text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
        check(done and text == want, f"streamed stop {stop!r}: {text!r} want {want!r}")
        check(chunks and chunks[-1]["choices"][0]["finish_reason"] == "stop", "streamed stop: finish_reason stop")
    # A stop string that never occurs changes nothing.
    st, r = completion(srv, prompt, n, stop="\u2603")
    check(st == 200 and r["choices"][0]["text"] == full, "a stop string that never occurs")


def test_logprobs(srv):
    prompt, n = PROMPTS[3], 10
    st, r = completion(srv, prompt, n, logprobs=3)
    check(st == 200, f"logprobs status {st}: {r}")
    if st != 200:
        return
    ch = r["choices"][0]
    lp = ch["logprobs"]
    k = r["usage"]["completion_tokens"]
    check(len(lp["tokens"]) == k and len(lp["token_logprobs"]) == k and len(lp["top_logprobs"]) == k,
          f"one logprob entry per token: {k} {lp}")
    check(all(x <= 0 and math.isfinite(x) for x in lp["token_logprobs"]), f"logprobs <= 0: {lp['token_logprobs']}")
    check("".join(lp["tokens"]) == ch["text"], f"tokens put together give the text: {lp['tokens']} {ch['text']!r}")
    ok = True
    for x, top in zip(lp["token_logprobs"], lp["top_logprobs"]):
        vals = list(top.values())
        ok &= 1 <= len(vals) <= 3 and all(v <= 0 for v in vals) and abs(max(vals) - x) < 1e-3
    check(ok, f"greedy: each token is the most probable alternative: {lp['top_logprobs']}")
    check(lp["text_offset"] == sorted(lp["text_offset"]) and lp["text_offset"][0] == 0, "text offsets")
    st, r = srv.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 6,
                                              "temperature": 0, "logprobs": True, "top_logprobs": 2})
    content = r["choices"][0]["logprobs"]["content"] if st == 200 else []
    check(st == 200 and len(content) == r["usage"]["completion_tokens"], f"chat logprobs: {r}")
    check(all(e["logprob"] <= 0 and len(e["top_logprobs"]) == 2 and all(t["logprob"] <= 0 for t in e["top_logprobs"])
              for e in content), f"chat logprobs <= 0 with 2 alternatives: {content}")
    st, r = completion(srv, prompt, 4)
    check(st == 200 and r["choices"][0]["logprobs"] is None, "no logprobs unless asked")


def test_concurrent(srv):
    n = 20
    solo = []
    for p in PROMPTS:
        st, r = completion(srv, p, n)
        solo.append(r["choices"][0]["text"] if st == 200 else None)
    results = [None] * len(PROMPTS)

    def one(i):
        try:
            st, r = completion(srv, PROMPTS[i], n)
            results[i] = r["choices"][0]["text"] if st == 200 else f"status {st}"
        except Exception as e:  # noqa: BLE001
            results[i] = f"exception {e}"

    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(PROMPTS))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    bad = [(PROMPTS[i], solo[i], results[i]) for i in range(len(PROMPTS)) if solo[i] is None or solo[i] != results[i]]
    check(not bad, f"16 concurrent greedy requests equal their solo results: {bad}")
    # Streamed and non-streamed at once.
    out = {}

    def streamed(i):
        st, chunks, done = srv.stream("/v1/completions", {"prompt": PROMPTS[i], "max_tokens": n, "temperature": 0,
                                                          "stream": True})
        out[i] = "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) if done else None

    ts = [threading.Thread(target=streamed, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(all(out.get(i) == solo[i] for i in range(8)), f"8 concurrent streams equal their solo results: {out}")


def wait_idle(srv, timeout=15):
    end = time.time() + timeout
    vals = {}
    while time.time() < end:
        st, text = srv.metrics()
        vals, _ = parse_prometheus(text)
        if vals.get("slimlm_requests_running") == 0 and vals.get("slimlm_requests_queued") == 0:
            return True, vals
        time.sleep(0.1)
    return False, vals


def test_disconnect(srv):
    ok, before = wait_idle(srv)
    check(ok, "idle before the disconnect test")
    long_req = {"prompt": PROMPTS[5], "max_tokens": 200, "temperature": 0, "ignore_eos": True}
    # Streaming: read two chunks, then drop the connection.
    s = socket.create_connection((srv.host, srv.port), timeout=30)
    body = json.dumps(dict(long_req, stream=True)).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while got.count(b"data: ") < 3:
        d = s.recv(4096)
        if not d:
            break
        got += d
    check(got.startswith(b"HTTP/1.1 200"), f"stream started: {got[:60]!r}")
    s.close()
    ok, after = wait_idle(srv)
    check(ok, f"after a client disconnects mid-stream, running and queued return to 0: {after}")
    gen = after.get("slimlm_tokens_generated_total", 0) - before.get("slimlm_tokens_generated_total", 0)
    check(gen < 150, f"the dropped stream was cancelled early ({gen:.0f} of 200 tokens)")
    # Non-streamed: the client gives up while the answer is computed.
    s = socket.create_connection((srv.host, srv.port), timeout=30)
    body = json.dumps(long_req).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    time.sleep(0.4)
    s.close()
    ok, after2 = wait_idle(srv)
    check(ok, f"after a waiting client disconnects, running returns to 0: {after2}")
    gen = after2.get("slimlm_tokens_generated_total", 0) - after.get("slimlm_tokens_generated_total", 0)
    check(gen < 150, f"the abandoned request was cancelled early ({gen:.0f} of 200 tokens)")
    st, _, out = srv.request("GET", "/health")
    check(st == 200, "server up after disconnects")


def raw_http(srv, data, read_timeout=10):
    """Send raw bytes, return (status, body) of the response."""
    s = socket.create_connection((srv.host, srv.port), timeout=read_timeout)
    try:
        s.sendall(data)
    except OSError:
        pass
    got = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
            if b"\r\n\r\n" in got:
                head, _, rest = got.partition(b"\r\n\r\n")
                m = re.search(rb"content-length: *(\d+)", head, re.I)
                if m and len(rest) >= int(m.group(1)):
                    break
    except OSError:
        pass
    s.close()
    m = re.match(rb"HTTP/1\.[01] (\d+)", got)
    return (int(m.group(1)) if m else 0), got.partition(b"\r\n\r\n")[2]


def test_errors(srv, args, mid):
    long_prompt = "hello world " * (args.ctx + 10)
    cases = [
        ("bad JSON", "/v1/completions", b'{"prompt": "hi", ', 400, None),
        ("trailing garbage", "/v1/completions", b'{"prompt": "hi"} x', 400, None),
        ("not an object", "/v1/completions", b'[1, 2]', 400, None),
        ("empty body", "/v1/completions", b'', 400, None),
        ("deep nesting", "/v1/completions", b'[' * 5000 + b']' * 5000, 400, None),
        ("prompt of wrong type", "/v1/completions", {"prompt": 5}, 400, None),
        ("missing prompt", "/v1/completions", {"max_tokens": 3}, 400, None),
        ("temperature a string", "/v1/completions", {"prompt": "hi", "temperature": "hot"}, 400, None),
        ("temperature out of range", "/v1/completions", {"prompt": "hi", "temperature": 7}, 400, None),
        ("negative max_tokens", "/v1/completions", {"prompt": "hi", "max_tokens": -5}, 400, None),
        ("zero max_tokens", "/v1/completions", {"prompt": "hi", "max_tokens": 0}, 400, None),
        ("fractional max_tokens", "/v1/completions", {"prompt": "hi", "max_tokens": 2.5}, 400, None),
        ("n too large", "/v1/completions", {"prompt": "hi", "n": 99}, 400, None),
        ("n a string", "/v1/completions", {"prompt": "hi", "n": "3"}, 400, None),
        ("stream not a bool", "/v1/completions", {"prompt": "hi", "stream": "yes"}, 400, None),
        ("top_p zero", "/v1/completions", {"prompt": "hi", "top_p": 0}, 400, None),
        ("logprobs too many", "/v1/completions", {"prompt": "hi", "logprobs": 21}, 400, None),
        ("five stop strings", "/v1/completions", {"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, 400, None),
        ("empty stop string", "/v1/completions", {"prompt": "hi", "stop": ""}, 400, None),
        ("token id out of range", "/v1/completions", {"prompt": [1, 2, 99999999]}, 400, None),
        ("empty token list", "/v1/completions", {"prompt": []}, 400, None),
        ("two prompts", "/v1/completions", {"prompt": ["a", "b"]}, 400, None),
        ("echo", "/v1/completions", {"prompt": "hi", "echo": True}, 400, None),
        ("logit_bias", "/v1/completions", {"prompt": "hi", "logit_bias": {"1": 5}}, 400, None),
        ("unknown model", "/v1/completions", {"prompt": "hi", "model": "gpt-17"}, 404, "model_not_found"),
        ("prompt longer than the context", "/v1/completions", {"prompt": long_prompt}, 400, "context_length_exceeded"),
        ("prompt + max_tokens over the context", "/v1/completions", {"prompt": "hi", "max_tokens": args.ctx},
         400, "context_length_exceeded"),
        ("chat without messages", "/v1/chat/completions", {"prompt": "hi"}, 400, None),
        ("chat with empty messages", "/v1/chat/completions", {"messages": []}, 400, None),
        ("chat with a bad role", "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]}, 400, None),
        ("chat content a number", "/v1/chat/completions", {"messages": [{"role": "user", "content": 3}]}, 400, None),
        ("chat top_logprobs without logprobs", "/v1/chat/completions",
         {"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}, 400, None),
        ("chat too long", "/v1/chat/completions", {"messages": [{"role": "user", "content": long_prompt}]}, 400,
         "context_length_exceeded"),
    ]
    for name, path, body, want, code in cases:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        st, _, out = srv.request("POST", path, raw=raw)
        try:
            err = json.loads(out)["error"]
            shaped = isinstance(err["message"], str) and "type" in err and "code" in err
        except (ValueError, KeyError, TypeError):
            err, shaped = {}, False
        check(st == want and shaped and (code is None or err.get("code") == code),
              f"{name}: want {want} {code or ''}, got {st} {out[:200]!r}")
    # Invalid UTF-8 in the prompt.
    st, _, out = srv.request("POST", "/v1/completions", raw=b'{"prompt": "\xff\xfe"}')
    check(st == 400, f"invalid UTF-8 prompt: {st} {out[:100]!r}")
    # Unknown path, wrong method.
    st, _, out = srv.request("GET", "/v2/nothing")
    check(st == 404 and "error" in json.loads(out), f"unknown path: {st}")
    st, hdrs, out = srv.request("GET", "/v1/completions")
    check(st == 405 and "error" in json.loads(out), f"GET on a POST endpoint: {st}")
    check(any(k.lower() == "allow" and "POST" in v for k, v in hdrs), f"405 names the allowed method: {hdrs}")
    st, _, out = srv.request("POST", "/health", body={})
    check(st == 405, f"POST on a GET endpoint: {st}")
    st, _, out = srv.request("DELETE", "/v1/models")
    check(st == 405, f"DELETE: {st}")
    # A huge body: refused from its Content-Length before it is read.
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\n\r\n")
    st, out = raw_http(srv, head + b'{"prompt": "' + b"a" * 1000)
    check(st == 413, f"huge Content-Length: 413, got {st} {out[:100]!r}")
    # A body over the limit without Content-Length (chunked upload).
    chunk = b"a" * 65536
    data = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    data += b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(20)) + b"0\r\n\r\n"
    st, out = raw_http(srv, data)
    check(st == 413, f"chunked body over the limit: 413, got {st} {out[:100]!r}")
    # Garbage on the socket.
    for junk in (b"\x00\x01\x02garbage\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"POST /v1/completions HTTP/1.1\r\n" + b"X: y\r\n" * 5000):
        raw_http(srv, junk, read_timeout=3)
    st, _, out = srv.request("GET", "/health")
    check(st == 200 and json.loads(out)["status"] == "ok", "server still answers /health after the bad requests")
    # A request that works after all that.
    st, r = completion(srv, "Hello", 2, model=mid)
    check(st == 200 and r["usage"]["completion_tokens"] >= 1, f"a good request after the bad ones: {st}")


def test_metrics(srv):
    st, text = srv.metrics()
    try:
        vals, types = parse_prometheus(text)
        parsed = True
    except ValueError as e:
        vals, types, parsed = {}, {}, False
        print("metrics parse error:", e)
    check(st == 200 and parsed, "/metrics parses as Prometheus text")
    need = ["slimlm_requests_queued", "slimlm_requests_running", "slimlm_kv_blocks_used", "slimlm_kv_blocks_total",
            "slimlm_tokens_generated_total", "slimlm_prompt_tokens_total", "slimlm_prompt_tokens_cached_total",
            "slimlm_preemptions_total", "slimlm_requests_total", "slimlm_tokens_per_second"]
    missing = [n for n in need if n not in vals]
    check(not missing, f"/metrics has every metric: missing {missing}")
    counters = [n for n in need if n.endswith("_total") and n != "slimlm_kv_blocks_total"]
    check(all(types.get(n) == "counter" for n in counters), f"counters typed: {types}")
    check(types.get("slimlm_kv_blocks_total") == "gauge" and types.get("slimlm_requests_running") == "gauge", "gauges typed")
    check(vals.get("slimlm_tokens_generated_total", 0) > 100 and vals.get("slimlm_requests_total", 0) > 20,
          f"counters count the work done: {vals}")
    check(vals.get("slimlm_kv_blocks_total", 0) > 0 and vals.get("slimlm_kv_blocks_used", -1) >= 0, f"kv blocks: {vals}")


def test_queue_full(url):
    """A server with one sequence slot and a queue of one refuses the rest with 429."""
    srv = Server(url)
    res = []
    lock = threading.Lock()

    def one():
        try:
            st, _ = srv.post("/v1/completions", {"prompt": "Count to a hundred:", "max_tokens": 48, "temperature": 0,
                                                 "ignore_eos": True})
        except Exception as e:  # noqa: BLE001
            st = str(e)
        with lock:
            res.append(st)

    ts = [threading.Thread(target=one) for _ in range(6)]
    for t in ts:
        t.start()
        time.sleep(0.02)
    for t in ts:
        t.join()
    check(429 in res and 200 in res and all(s in (200, 429) for s in res), f"queue full: 429 for the overflow: {res}")
    st, _, body = srv.request("POST", "/v1/completions", body={"prompt": "x", "max_tokens": 1})
    check(st == 200, f"accepts again once the queue drains: {st}")


def test_preempt(small, ref_srv):
    """A server whose KV pool holds far fewer positions than the concurrent requests need:
    sequences are preempted and recomputed, and every greedy answer still equals its solo one."""
    n = 24
    solo = []
    for p in PROMPTS[:8]:
        st, r = completion(ref_srv, p, n)
        solo.append(r["choices"][0]["text"] if st == 200 else None)
    results = [None] * 8

    def one(i):
        try:
            st, r = completion(small, PROMPTS[i], n)
            results[i] = r["choices"][0]["text"] if st == 200 else f"status {st}"
        except Exception as e:  # noqa: BLE001
            results[i] = f"exception {e}"

    ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    bad = [(PROMPTS[i], solo[i], results[i]) for i in range(8) if solo[i] is None or solo[i] != results[i]]
    check(not bad, f"preempted greedy requests equal their solo results: {bad}")
    st, text = small.metrics()
    vals, _ = parse_prometheus(text)
    check(vals.get("slimlm_preemptions_total", 0) > 0, f"the small KV pool preempted: {vals.get('slimlm_preemptions_total')}")
    ok, vals = wait_idle(small)
    check(ok and vals.get("slimlm_kv_tokens", -1) == 0, f"small server idle with an empty cache: {vals}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--busy-url")
    ap.add_argument("--preempt-url", help="a server with a KV pool too small for 8 concurrent requests")
    args = ap.parse_args()
    srv = Server(args.url)
    mid = None
    try:
        mid = test_basics(srv, args)
        for name, fn in (("greedy", lambda: test_greedy(srv, args, mid)), ("chat", lambda: test_chat(srv, args)),
                         ("samples", lambda: test_samples(srv)), ("stop", lambda: test_stop(srv, args)),
                         ("logprobs", lambda: test_logprobs(srv)), ("concurrent", lambda: test_concurrent(srv)),
                         ("disconnect", lambda: test_disconnect(srv)), ("errors", lambda: test_errors(srv, args, mid)),
                         ("metrics", lambda: test_metrics(srv))):
            t0 = time.time()
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                check(False, f"{name}: exception {type(e).__name__}: {e}")
            print(f"  {name}: {time.time() - t0:.1f}s", flush=True)
        if args.busy_url:
            test_queue_full(args.busy_url)
        if args.preempt_url:
            t0 = time.time()
            try:
                test_preempt(Server(args.preempt_url), srv)
            except Exception as e:  # noqa: BLE001
                check(False, f"preempt: exception {type(e).__name__}: {e}")
            print(f"  preempt: {time.time() - t0:.1f}s", flush=True)
    except Exception as e:  # noqa: BLE001
        check(False, f"exception {type(e).__name__}: {e}")
    print(f"serve_client: {PASS} passed, {FAIL} failed")
    return 0 if FAIL == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
