#!/usr/bin/env python3
"""Client side of tests/e2e_deploy.sh: drives N `slimlm serve` replicas behind nginx
(deploy/replicas.sh) through the front URL and reads each replica's own /metrics directly.

usage: deploy_client.py stream --front URL --replica URL=PID ...
       deploy_client.py load --front URL --replica URL=PID ... [--requests 40] [--clients 4]
                             [--max-tokens 8] [--kill-after 12]
       deploy_client.py prefix --front URL --replica URL=PID ... [--groups 4] [--per-group 3]
                               [--affinity]

stream: a streamed completion through nginx arrives event by event (its first event comes
  while the replica is still generating: nginx does not buffer it), and its text equals the
  same request answered whole by a replica directly.
load: greedy references are fetched from a replica directly; then --clients threads send
  --requests completions through nginx; after --kill-after answers, the replica that served
  the most requests is read (/metrics) and killed with SIGKILL. Every answer must be a 200
  whose text equals the reference, or a 502/503/504 with a JSON error body; requests sent
  after the kill must all succeed; the survivor must serve after the kill.
prefix: --groups groups of --per-group requests, sent one at a time; the prompts of a group
  share a long prefix (its first 256 bytes and more), the suffixes differ. Prints the
  replicas' prefix-cache counters ("prefix_hits H requests R cached_tokens C prompt_tokens P").
  With --affinity the requests of a group must all go to one replica.
Prints one line per failure and ends with "deploy_client: N passed, M failed".
"""
import argparse
import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse

PASS = 0
FAIL = 0
LOCK = threading.Lock()

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

COMMON = ("The river runs through the old town, past the market square and the stone bridge "
          "that the masons built three hundred years ago. In the spring the water rises and "
          "the meadows on both banks turn green; in the autumn the fishermen mend their nets "
          "on the quay and the children watch the barges go by. The town council meets every "
          "Tuesday in the hall beside the church, and the minutes of each meeting are kept in "
          "the archive under the tower. ")


def check(cond, what):
    global PASS, FAIL
    with LOCK:
        if cond:
            PASS += 1
        else:
            FAIL += 1
            print("FAIL:", what, flush=True)
    return cond


def hostport(url):
    u = urllib.parse.urlparse(url)
    return u.hostname, u.port


def request(url, method, path, body=None, raw=None, timeout=60):
    """(status, headers dict with lower-case names, body bytes); status None on a transport
    error (the exception text in the body)."""
    host, port = hostport(url)
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        c.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        out = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, out
    except (OSError, http.client.HTTPException) as e:
        return None, {}, ("%s: %s" % (type(e).__name__, e)).encode()
    finally:
        c.close()


def metrics(url):
    """Prometheus counters of one replica, as a dict (empty if it does not answer)."""
    st, _, out = request(url, "GET", "/metrics", timeout=10)
    if st != 200:
        return {}
    m = {}
    for line in out.decode(errors="replace").splitlines():
        mm = re.match(r"^(slimlm_[a-z_]+) ([0-9.eE+-]+)$", line)
        if mm:
            m[mm.group(1)] = float(mm.group(2))
    return m


def completion(prompt, max_tokens, **extra):
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    body.update(extra)
    return body


def valid_completion(out, reference, max_tokens):
    """None when out is a well-formed completion with the reference text, else why not."""
    try:
        j = json.loads(out)
        ch = j["choices"][0]
        if j.get("object") != "text_completion":
            return "object %r" % j.get("object")
        if ch.get("finish_reason") not in ("length", "stop"):
            return "finish_reason %r" % ch.get("finish_reason")
        if not 0 < j["usage"]["completion_tokens"] <= max_tokens:
            return "completion_tokens %r" % j["usage"]["completion_tokens"]
        if ch["text"] != reference:
            return "text %r, reference %r" % (ch["text"], reference)
        return None
    except (ValueError, KeyError, IndexError, TypeError) as e:
        return "malformed (%s): %r" % (type(e).__name__, out[:200])


def json_error_body(out):
    try:
        j = json.loads(out)
        return isinstance(j, dict) and isinstance(j.get("error"), dict)
    except ValueError:
        return False


def parse_replicas(items):
    reps = []
    for it in items:
        url, _, pid = it.partition("=")
        reps.append((url, int(pid)))
    return reps


# ---- stream ----------------------------------------------------------------------------------

def cmd_stream(a):
    reps = parse_replicas(a.replica)
    prompt, n = "Tell me a long story about a dragon.", 200
    st, _, whole = request(reps[0][0], "POST", "/v1/completions", completion(prompt, n, ignore_eos=True))
    if not check(st == 200, "reference for the stream: status %s %r" % (st, whole[:200])):
        return
    reference = json.loads(whole)["choices"][0]["text"]
    before = sum(metrics(u).get("slimlm_tokens_generated_total", 0) for u, _ in reps)
    host, port = hostport(a.front)
    c = http.client.HTTPConnection(host, port, timeout=60)
    c.request("POST", "/v1/completions", body=json.dumps(completion(prompt, n, ignore_eos=True, stream=True)),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    check(r.status == 200, "stream through nginx: status %s" % r.status)
    check(r.getheader("Content-Type", "").startswith("text/event-stream"),
          "stream content type %r" % r.getheader("Content-Type"))
    text, first, done, events = "", None, False, 0
    try:
        while True:
            line = r.readline()
            if not line:
                break
            line = line.decode().strip()
            if not line.startswith("data: "):
                continue
            if first is None:
                ms = [metrics(u) for u, _ in reps]
                first = (sum(m.get("slimlm_tokens_generated_total", 0) for m in ms) - before,
                         sum(m.get("slimlm_requests_running", 0) for m in ms))
            if line == "data: [DONE]":
                done = True
                break
            events += 1
            text += json.loads(line[6:])["choices"][0]["text"]
    except (OSError, ValueError, KeyError, IndexError, http.client.HTTPException) as e:
        check(False, "stream read: %s: %s" % (type(e).__name__, e))
    c.close()
    check(done, "stream ends with [DONE] (%d events)" % events)
    check(text == reference, "streamed text equals the whole answer:\n  %r\n  %r" % (text, reference))
    # Passed through as produced, the first event comes after a token or two, while the
    # generation of the 200 runs; held back (buffered whole, compressed, cached) it would come
    # after the last token, with no request running.
    check(first is not None and first[1] >= 1 and first[0] < 12,
          "first event arrives while the replica is still generating (tokens generated, running "
          "requests at that point: %s)" % (first,))
    print("stream: %d events; at the first event %s tokens generated, %s running" %
          (events, first and int(first[0]), first and int(first[1])))


# ---- load with a kill ------------------------------------------------------------------------

def cmd_load(a):
    reps = parse_replicas(a.replica)
    refs = {}
    for p in PROMPTS:
        st, _, out = request(reps[0][0], "POST", "/v1/completions", completion(p, a.max_tokens))
        if not check(st == 200, "reference %r: status %s" % (p, st)):
            return
        refs[p] = json.loads(out)["choices"][0]["text"]
    m0 = [metrics(u) for u, _ in reps]

    outcomes = {"ok": 0, "retryable": 0, "bad": 0}
    after_kill = {"sent": 0, "ok": 0}
    state = {"next": 0, "done": 0, "killed": False, "victim": None, "victim_served": 0}
    cond = threading.Condition()

    def kill_victim():
        ms = [metrics(u) for u, _ in reps]
        served = [int(m.get("slimlm_requests_total", 0) - b.get("slimlm_requests_total", 0)) for m, b in zip(ms, m0)]
        v = max(range(len(reps)), key=lambda i: served[i])
        state["victim"], state["victim_served"] = v, served[v]
        os.kill(reps[v][1], signal.SIGKILL)
        # "after the kill" starts once its port refuses connections (the kernel has closed
        # its sockets); a request sent before that may still have reached it
        host, port = hostport(reps[v][0])
        for _ in range(200):
            try:
                socket.create_connection((host, port), timeout=1).close()
            except ConnectionRefusedError:
                break
            except OSError:
                pass
            time.sleep(0.05)
        state["killed"] = True
        print("load: killed replica %d (pid %d) after %d answers; it had served %d, the others %s" %
              (v, reps[v][1], state["done"], served[v], [s for i, s in enumerate(served) if i != v]), flush=True)

    def worker():
        while True:
            with cond:
                if state["next"] >= a.requests:
                    return
                i = state["next"]
                state["next"] += 1
                sent_after_kill = state["killed"]
            p = PROMPTS[i % len(PROMPTS)]
            st, hdr, out = request(a.front, "POST", "/v1/completions", completion(p, a.max_tokens), timeout=60)
            if st == 200:
                why = valid_completion(out, refs[p], a.max_tokens)
                kind = "ok" if why is None else "bad"
                if why:
                    check(False, "request %d: 200 but %s" % (i, why))
            elif st in (502, 503, 504) and json_error_body(out):
                kind = "retryable"
            else:
                kind = "bad"
                check(False, "request %d: status %s, body %r" % (i, st, out[:200]))
            with cond:
                outcomes[kind] += 1
                if sent_after_kill:
                    after_kill["sent"] += 1
                    after_kill["ok"] += kind == "ok"
                state["done"] += 1
                kill_now = state["done"] == a.kill_after and not state["killed"]
            if kill_now:
                with cond:
                    kill_victim()

    threads = [threading.Thread(target=worker) for _ in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    hung = sum(t.is_alive() for t in threads)
    check(hung == 0, "%d client threads still waiting (a request hangs)" % hung)
    total = sum(outcomes.values())
    print("load: %d requests: %d completed (200, reference text), %d clean gateway errors "
          "(502/503/504 with a JSON body), %d bad; %d sent after the kill, %d of them completed" %
          (total, outcomes["ok"], outcomes["retryable"], outcomes["bad"], after_kill["sent"], after_kill["ok"]))
    check(state["killed"], "a replica was killed during the run")
    check(total == a.requests, "every request got an answer (%d of %d)" % (total, a.requests))
    check(outcomes["bad"] == 0, "no malformed or unexpected answers (%d)" % outcomes["bad"])
    # requests in flight on the killed replica may fail (nginx does not resend a sent POST)
    check(outcomes["retryable"] <= a.clients, "at most one failure per client in flight at the kill (%d)" %
          outcomes["retryable"])
    check(after_kill["sent"] > 0 and after_kill["ok"] == after_kill["sent"],
          "requests sent after the kill all completed (%d of %d)" % (after_kill["ok"], after_kill["sent"]))
    if state["victim"] is None:
        return
    v = state["victim"]
    check(state["victim_served"] > 0, "the killed replica served requests before the kill (its /metrics)")
    check(not metrics(reps[v][0]), "the killed replica no longer answers")
    for i, (u, _) in enumerate(reps):
        if i == v:
            continue
        served = metrics(u).get("slimlm_requests_total", 0) - m0[i].get("slimlm_requests_total", 0)
        check(served > 0, "replica %d served requests (its /metrics: %d)" % (i, served))
        print("load: replica %d served %d requests (its /metrics)" % (i, served))
    # the front still answers after the run
    st, _, out = request(a.front, "POST", "/v1/completions", completion(PROMPTS[0], a.max_tokens))
    check(st == 200 and valid_completion(out, refs[PROMPTS[0]], a.max_tokens) is None,
          "a request after the run completes (status %s)" % st)


# ---- prefix affinity -------------------------------------------------------------------------

def cmd_prefix(a):
    reps = parse_replicas(a.replica)
    by_addr = {"%s:%d" % hostport(u): i for i, (u, _) in enumerate(reps)}
    hits = requests = cached = prompt = 0
    for g in range(a.groups):
        where = set()
        for k in range(a.per_group):
            p = "Chapter %d. %s Question %d: what happened next?" % (g + 1, COMMON, k + 1)
            before = [metrics(u) for u, _ in reps]
            st, hdr, out = request(a.front, "POST", "/v1/completions", completion(p, 4))
            after = [metrics(u) for u, _ in reps]
            if not check(st == 200, "prefix request %d/%d: status %s %r" % (g, k, st, out[:200])):
                continue
            d_prompt = [x.get("slimlm_prompt_tokens_total", 0) - y.get("slimlm_prompt_tokens_total", 0)
                        for x, y in zip(after, before)]
            d_cached = [x.get("slimlm_prompt_tokens_cached_total", 0) - y.get("slimlm_prompt_tokens_cached_total", 0)
                        for x, y in zip(after, before)]
            served = [i for i in range(len(reps)) if d_prompt[i] > 0]
            check(len(served) == 1, "prefix request %d/%d ran on exactly one replica (%s)" % (g, k, served))
            check(by_addr.get(hdr.get("x-slimlm-upstream")) in served,
                  "X-Slimlm-Upstream %r names the replica that ran it" % hdr.get("x-slimlm-upstream"))
            where.update(served)
            requests += 1
            hits += sum(d_cached) > 0
            cached += sum(d_cached)
            prompt += sum(d_prompt)
        if a.affinity:
            check(len(where) == 1, "group %d went to one replica (%s)" % (g, sorted(where)))
    if a.affinity:
        # chat requests sharing a long system message, and a body that is not JSON
        where = set()
        for k in range(3):
            body = {"messages": [{"role": "system", "content": COMMON},
                                 {"role": "user", "content": "Question %d: who built the bridge?" % k}],
                    "max_tokens": 2, "temperature": 0}
            st, hdr, _ = request(a.front, "POST", "/v1/chat/completions", body)
            check(st == 200, "chat request %d: status %s" % (k, st))
            where.add(hdr.get("x-slimlm-upstream"))
        check(len(where) == 1, "chat requests with the same system message went to one replica (%s)" % where)
        st, _, out = request(a.front, "POST", "/v1/completions", raw=b"not json")
        check(st == 400 and json_error_body(out), "a body that is not JSON reaches a replica: 400 (%s)" % st)
    print("prefix_hits %d requests %d cached_tokens %d prompt_tokens %d" % (hits, requests, cached, prompt))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["stream", "load", "prefix"])
    ap.add_argument("--front", required=True)
    ap.add_argument("--replica", action="append", required=True, help="URL=PID of a replica")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--kill-after", type=int, default=12)
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--per-group", type=int, default=3)
    ap.add_argument("--affinity", action="store_true")
    a = ap.parse_args()
    {"stream": cmd_stream, "load": cmd_load, "prefix": cmd_prefix}[a.mode](a)
    print("deploy_client: %d passed, %d failed" % (PASS, FAIL))
    return 0 if FAIL == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
