#!/usr/bin/env python3
"""Reference token ids and pre-tokenizer splits for tests/test_tokenizer.c.

Reads the texts of tests/data/tokenizer_texts.txt and the vocabulary and merges of the
SmolLM2 GGUF, and writes:
  tests/data/tokenizer_expected_smollm.txt  "<text index> <parse_special 0|1> <count> <ids...>"
  tests/data/tokenizer_splits.txt           "<pre> <text index> <count> <piece end offsets...>"

Token ids come from the Hugging Face `tokenizers` library with the pipeline SmolLM2 uses
(BPE over the GGUF's vocab and merges, pre-tokenizers Digits(individual_digits) then
ByteLevel with the GPT-2 regex). Texts that are not valid UTF-8 cannot go through that
pipeline; for them (and, as a cross-check, for every other text) a second path splits the
text with the `regex` module (invalid bytes become lone surrogates, a class of their own) and
runs each piece through the same BPE model. The one deliberate difference: a byte that has
no byte-level token (this vocabulary lacks C0, C1 and F5..FF, which valid UTF-8 never
contains) becomes U+FFFD, where tokenizers would silently drop it. The split offsets for the gpt2, smollm, llama3
and qwen2 pre-tokenizers come from the `regex` module with the published patterns.

Regenerate (pip install tokenizers regex gguf):
  python3 tests/reference/tokenizer_ref.py [MODEL.gguf]
Default model: $SLIMLM_MODEL or ~/.cache/slimlm/SmolLM2-135M-Instruct.Q4_1.gguf.
"""
import os
import sys

import gguf
import regex
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DATA = os.path.join(ROOT, "tests", "data")

WS = r"\p{White_Space}"
NWS = r"\P{White_Space}"
PATTERNS = {
    "gpt2": r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^WS\p{L}\p{N}]+|WS+(?!NWS)|WS+",
    "llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^WS\p{L}\p{N}]+[\r\n]*"
              r"|WS*[\r\n]+|WS+(?!NWS)|WS+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^WS\p{L}\p{N}]+[\r\n]*"
             r"|WS*[\r\n]+|WS+(?!NWS)|WS+",
}
# [^WS...] needs the class body, not a bracketed class.
COMPILED = {k: regex.compile(v.replace("[^WS", r"[^\p{White_Space}").replace("NWS", NWS).replace("WS", WS))
            for k, v in PATTERNS.items()}


def unescape(line):
    out = bytearray()
    i = 0
    b = line.encode("utf-8")
    while i < len(b):
        c = b[i]
        if c == 0x5C and i + 1 < len(b):
            n = b[i + 1]
            if n == ord("n"):
                out.append(10); i += 2
            elif n == ord("t"):
                out.append(9); i += 2
            elif n == ord("r"):
                out.append(13); i += 2
            elif n == ord("\\"):
                out.append(0x5C); i += 2
            elif n == ord("x"):
                out.append(int(b[i + 2:i + 4], 16)); i += 4
            else:
                raise ValueError("bad escape in %r" % line)
        else:
            out.append(c); i += 1
    return bytes(out)


def read_texts(path):
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f.read().split("\n"):
            if not line or line.startswith("#"):
                continue
            if line.startswith("@repeat "):
                _, n, t = line.split(" ", 2)
                texts.append(unescape(t) * int(n))
            else:
                texts.append(unescape(line))
    return texts


def split(pre, s):
    """Pieces (as str, surrogate-escaped) of s under pre-tokenizer pre."""
    if pre == "smollm":
        out = []
        for seg in regex.split(r"(\p{N})", s):
            if seg:
                out += split("gpt2", seg) if not regex.fullmatch(r"\p{N}", seg) else [seg]
        return out
    pieces, pos = [], 0
    for m in COMPILED[pre].finditer(s):
        assert m.start() == pos and m.end() > pos, (pre, s, m)
        pieces.append(m.group())
        pos = m.end()
    assert pos == len(s)
    return pieces


def bytes_to_unicode():
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def main():
    model_path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "SLIMLM_MODEL", os.path.expanduser("~/.cache/slimlm/SmolLM2-135M-Instruct.Q4_1.gguf"))
    r = gguf.GGUFReader(model_path)
    f = r.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    f = r.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    f = r.fields["tokenizer.ggml.merges"]
    merges = [tuple(bytes(f.parts[i]).decode("utf-8").split(" ", 1)) for i in f.data]
    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    control = [t for t, ty in zip(tokens, types) if ty == 3]

    def build(with_special):
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
        tok.decoder = decoders.ByteLevel()
        if with_special:
            tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
        return tok

    hf = {0: build(False), 1: build(True)}
    bl = bytes_to_unicode()
    model = hf[0].model

    def second_path(b, parse_special):
        s = b.decode("utf-8", "surrogateescape")
        frags = []  # (is_special, text)
        i = start = 0
        while i < len(s):
            m = None
            if parse_special:
                for t in sorted(control, key=len, reverse=True):
                    if s.startswith(t, i):
                        m = t
                        break
            if m is None:
                i += 1
                continue
            if i > start:
                frags.append((False, s[start:i]))
            frags.append((True, m))
            i += len(m)
            start = i
        if start < len(s):
            frags.append((False, s[start:]))
        ids = []
        for special, t in frags:
            if special:
                ids.append(vocab[t])
                continue
            for p in split("smollm", t):
                pb = p.encode("utf-8", "surrogateescape")
                # A byte whose byte-level character is not in the vocabulary (C0, C1, F5..FF
                # here) is encoded as U+FFFD, as slimlm does; tokenizers would drop it.
                chars = "".join(bl[c] if bl[c] in vocab else "".join(bl[x] for x in "\ufffd".encode()) for c in pb)
                ids += [tok.id for tok in model.tokenize(chars)]
        return ids

    texts = read_texts(os.path.join(DATA, "tokenizer_texts.txt"))
    n_checked = 0
    with open(os.path.join(DATA, "tokenizer_expected_smollm.txt"), "w") as out:
        out.write("# <text index> <parse_special> <count> <ids...>: tests/reference/tokenizer_ref.py\n")
        for idx, b in enumerate(texts):
            for ps in (0, 1):
                ids2 = second_path(b, ps)
                try:
                    s = b.decode("utf-8")
                except UnicodeDecodeError:
                    s = None
                if s is not None:
                    ids = hf[ps].encode(s, add_special_tokens=False).ids
                    if ids != ids2:
                        sys.exit("text %d parse_special %d: tokenizers and regex paths disagree:\n%s\n%s" % (idx, ps, ids, ids2))
                    n_checked += 1
                else:
                    ids = ids2
                out.write("%d %d %d %s\n" % (idx, ps, len(ids), " ".join(map(str, ids))))
    with open(os.path.join(DATA, "tokenizer_splits.txt"), "w") as out:
        out.write("# <pre> <text index> <count> <piece end byte offsets...>: tests/reference/tokenizer_ref.py\n")
        for pre in ("gpt2", "smollm", "llama3", "qwen2"):
            for idx, b in enumerate(texts):
                ends, pos = [], 0
                for p in split(pre, b.decode("utf-8", "surrogateescape")):
                    pos += len(p.encode("utf-8", "surrogateescape"))
                    ends.append(pos)
                out.write("%s %d %d %s\n" % (pre, idx, len(ends), " ".join(map(str, ends))))
    print("%d texts; tokenizers and regex paths agree on %d encodings" % (len(texts), n_checked))


if __name__ == "__main__":
    main()
