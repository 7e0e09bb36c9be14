#!/usr/bin/env bash
# slimlm serve --lookup: speculative decoding by prompt lookup inside the batching server.
# The reference is a server without --lookup: greedy completions (input-grounded prompts whose
# answers copy the input, and open-ended ones) must be equal one at a time and 4 at once; cuts
# by max_tokens and stop strings inside accepted drafts; streams equal to whole answers; a KV
# pool small enough to force preemption; /metrics counting drafted and accepted tokens; seeded
# sampling reproducible alone and among other requests, with valid logprobs; bad flags refused.
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh

. tests/lib/serve.sh

"$BIN" serve --help >"$TMP/h" 2>&1
check "serve --help documents --lookup" grep -q -- "--lookup N" "$TMP/h"
check "serve --help documents --draft-max" grep -q -- "--draft-max G" "$TMP/h"
expect_error "serve: --lookup 0" "$BIN" serve -m "$MODEL" --port 0 --lookup 0
expect_error "serve: --lookup 65" "$BIN" serve -m "$MODEL" --port 0 --lookup 65
expect_error "serve: --lookup x" "$BIN" serve -m "$MODEL" --port 0 --lookup x
expect_error "serve: --draft-max 0" "$BIN" serve -m "$MODEL" --port 0 --lookup 3 --draft-max 0
expect_error "serve: --draft-max 17" "$BIN" serve -m "$MODEL" --port 0 --lookup 3 --draft-max 17
expect_error "serve: --draft-max without --lookup" "$BIN" serve -m "$MODEL" --port 0 --draft-max 4
expect_error "serve: --draft MODEL" "$BIN" serve -m "$MODEL" --port 0 --draft "$MODEL"
expect_error "serve: --draft-layers" "$BIN" serve -m "$MODEL" --port 0 --draft-layers 8
"$BIN" serve -m "$MODEL" --port 0 --draft "$MODEL" 2>"$TMP/e" </dev/null
check "serve: --draft names prompt lookup as the supported way ($(cat "$TMP/e"))" grep -q "prompt lookup only" "$TMP/e"

start_server "$TMP/ref.err" -c 512 -t 1
check "reference server starts ($(head -c 300 "$TMP/ref.err"))" test -n "$SPORT"
REF=$SPORT
start_server "$TMP/spec.err" -c 512 -t 1 --lookup 3 --draft-max 4
check "lookup server starts ($(head -c 300 "$TMP/spec.err"))" test -n "$SPORT"
SPEC=$SPORT
# 6 blocks of 16 positions for 4 concurrent requests of ~50-70 positions: preemption
start_server "$TMP/tiny.err" -c 128 -t 1 --lookup 3 --draft-max 4 --kv-tokens 128 --max-seqs 4 --no-prefix-cache
check "tiny-pool lookup server starts ($(head -c 300 "$TMP/tiny.err"))" test -n "$SPORT"
TINY=$SPORT

if [ -n "$REF" ] && [ -n "$SPEC" ] && [ -n "$TINY" ]; then
  python3 - "$REF" "$SPEC" "$TINY" >"$TMP/client.txt" 2>&1 <<'PY'
import http.client, json, math, re, sys, threading

PASS = FAIL = 0
def check(cond, what):
    global PASS, FAIL
    if cond: PASS += 1
    else:
        FAIL += 1
        print("FAIL:", what, flush=True)
    return cond

def post(port, body, path="/v1/completions"):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=120)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    out = json.loads(r.read())
    c.close()
    return r.status, out

def stream(port, body):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=120)
    c.request("POST", "/v1/completions", body=json.dumps(dict(body, stream=True)),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    text, done, finish = "", False, None
    for line in r.read().decode().split("\n"):
        if not line.startswith("data: "): continue
        if line[6:] == "[DONE]":
            done = True
            continue
        ch = json.loads(line[6:])["choices"][0]
        text += ch.get("text") or ""
        finish = ch.get("finish_reason") or finish
    c.close()
    return text, done, finish

def metrics(port):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    c.request("GET", "/metrics")
    txt = c.getresponse().read().decode()
    c.close()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\w+) (\S+)$", txt, re.M)}

def greedy(port, prompt, n, **kw):
    st, r = post(port, dict({"prompt": prompt, "max_tokens": n, "temperature": 0}, **kw))
    if st != 200: return None, None, r
    return r["choices"][0]["text"], r["choices"][0]["finish_reason"], r["usage"]["completion_tokens"]

REF, SPEC, TINY = sys.argv[1:4]
SPELL = ("Fix the spelling mistakes in the following text and write out the corrected text:\n\n"
         "The quick brwon fox jumpd over the lazzy dog. It was a beautful day and the sun was shinning "
         "brightly in the clear bleu sky.\n\nCorrected text:\n")
CODE = ("Rename the variable x to count in this code and write out the whole code:\n\n"
        "def total(items):\n    x = 0\n    for item in items:\n        x += item\n    return x\n\nCode:\n")
PROMPTS = [
    SPELL,
    CODE,
    "Repeat the following list exactly: apples, pears, plums, cherries, grapes, lemons.\nList:",
    "Copy this sentence: The meeting is moved to Tuesday at nine in room four.\nCopy:",
    "Once upon a time, there was a",
    "The best way to learn a language is",
    "def fibonacci(n):",
    "Photosynthesis is the process by which",
]
N = 40

# one at a time
refs = []
for i, p in enumerate(PROMPTS):
    a = greedy(REF, p, N)
    b = greedy(SPEC, p, N)
    refs.append(a)
    check(a[0] is not None and a == b, f"prompt {i}: lookup equals no lookup: {b!r} vs {a!r}")

m = metrics(SPEC)
check(m.get("slimlm_spec_drafted_tokens_total", 0) > 0 and m.get("slimlm_spec_accepted_tokens_total", 0) > 0,
      f"metrics: drafted and accepted > 0: {m.get('slimlm_spec_drafted_tokens_total')} "
      f"{m.get('slimlm_spec_accepted_tokens_total')}")
check(m.get("slimlm_spec_verify_steps_total", 0) > 0 and 0 < m.get("slimlm_spec_acceptance_ratio", 0) <= 1,
      f"metrics: verification steps and acceptance ratio: {m}")
# the spelling fix alone: its drafts are accepted
before = m.get("slimlm_spec_accepted_tokens_total", 0)
greedy(SPEC, SPELL, N, ignore_eos=True)
check(metrics(SPEC).get("slimlm_spec_accepted_tokens_total", 0) > before, "spelling fix: drafts accepted")

# 4 at once, on the lookup server and on the tiny pool (preemption)
def concurrent(port, idx):
    out = [None] * len(idx)
    def one(k):
        out[k] = greedy(port, PROMPTS[idx[k]], N)
    ts = [threading.Thread(target=one, args=(k,)) for k in range(len(idx))]
    for t in ts: t.start()
    for t in ts: t.join()
    return out
for group in ([0, 1, 4, 5], [2, 3, 6, 7]):
    got = concurrent(SPEC, group)
    for k, i in enumerate(group):
        check(got[k] == refs[i], f"4 concurrent: prompt {i} equals the reference: {got[k]!r} vs {refs[i]!r}")
got = concurrent(TINY, [0, 1, 2, 3])
for k in range(4):
    check(got[k] == refs[k], f"tiny pool: prompt {k} equals the reference: {got[k]!r} vs {refs[k]!r}")
check(metrics(TINY).get("slimlm_preemptions_total", 0) > 0, "tiny pool: preempted")

# max_tokens at every place of the first accepted runs
full = greedy(REF, SPELL, 24, ignore_eos=True)
bad = []
for n in range(1, 17):
    a = greedy(REF, SPELL, n, ignore_eos=True)
    b = greedy(SPEC, SPELL, n, ignore_eos=True)
    if a != b or b[2] != n or b[1] != "length": bad.append((n, a, b))
check(not bad, f"max_tokens cuts equal the reference: {bad[:2]}")

# stop strings inside the accepted text
text = full[0]
bad = []
for lo in range(3, min(len(text) - 4, 60), 5):
    stop = text[lo:lo + 3]
    a = greedy(REF, SPELL, 24, ignore_eos=True, stop=[stop])
    b = greedy(SPEC, SPELL, 24, ignore_eos=True, stop=[stop])
    if a != b or b[0] != text[:text.find(stop)] or b[1] != "stop": bad.append((stop, a, b))
check(not bad, f"stop strings equal the reference: {bad[:2]}")
s_text, s_done, s_finish = stream(SPEC, {"prompt": SPELL, "max_tokens": 24, "temperature": 0, "ignore_eos": True,
                                        "stop": [text[20:23]]})
check(s_done and s_text == text[:text.find(text[20:23])] and s_finish == "stop", f"streamed stop: {s_text!r}")

# streams equal whole answers
for i in (0, 1, 4):
    s_text, s_done, s_finish = stream(SPEC, {"prompt": PROMPTS[i], "max_tokens": N, "temperature": 0})
    check(s_done and s_text == refs[i][0] and s_finish == refs[i][1], f"stream {i}: {s_text!r} vs {refs[i][0]!r}")

# seeded sampling: reproducible alone and among other requests, valid tokens and logprobs
body = {"prompt": SPELL, "max_tokens": 32, "temperature": 0.8, "seed": 1234, "logprobs": 1}
st1, r1 = post(SPEC, body)
res = {}
def samp(): res["s"] = post(SPEC, body)
def other(i): greedy(SPEC, PROMPTS[i], N)
ts = [threading.Thread(target=samp)] + [threading.Thread(target=other, args=(i,)) for i in (1, 4, 5)]
for t in ts: t.start()
for t in ts: t.join()
st2, r2 = res["s"]
check(st1 == 200 and st2 == 200 and r1["choices"][0]["text"] == r2["choices"][0]["text"],
      f"seeded sampling: same text alone and among others: {r1} {r2}")
lp = r1["choices"][0]["logprobs"] if st1 == 200 else None
k = r1["usage"]["completion_tokens"] if st1 == 200 else 0
check(lp is not None and k > 0 and len(lp["token_logprobs"]) == k and
      all(math.isfinite(x) and x <= 0 for x in lp["token_logprobs"]) and "".join(lp["tokens"]) == r1["choices"][0]["text"],
      f"seeded sampling: {k} tokens with valid logprobs")
print(f"serve_spec_client: {PASS} passed, {FAIL} failed")
PY
  cat "$TMP/client.txt"
  line=$(grep -E '^serve_spec_client: [0-9]+ passed, [0-9]+ failed' "$TMP/client.txt" | tail -n 1)
  p=$(echo "$line" | sed -nE 's/^serve_spec_client: ([0-9]+) passed.*/\1/p')
  f=$(echo "$line" | sed -nE 's/.* ([0-9]+) failed$/\1/p')
  if [ -z "$line" ]; then bad "the client did not finish"; else PASS=$((PASS + p)); FAIL=$((FAIL + f)); fi
fi
check "server logs have no sanitizer reports" bash -c "! grep -q -E 'Sanitizer|runtime error' '$TMP/ref.err' '$TMP/spec.err' '$TMP/tiny.err'"
summary e2e_serve_spec
