#!/usr/bin/env python3
"""Build the SentencePiece fixture for tests/test_tokenizer.c.

Trains a small BPE SentencePiece model (vocab 1000, byte fallback, identity normalization,
no whitespace collapsing: the settings of Llama 2's tokenizer) on the first 200,000
characters of ../shared/data/wikitext2-valid.txt (calibration text, never the evaluation
text), converts it to a GGUF that holds only tokenizer metadata, and writes the
sentencepiece ids of every valid UTF-8 text of tests/data/tokenizer_texts.txt:
  tests/data/tokenizer_spm.gguf
  tests/data/tokenizer_expected_spm.txt   "<text index> <count> <ids...>" ("-" for texts
                                          that are not valid UTF-8: sentencepiece takes str)

Regenerate (pip install sentencepiece gguf): python3 tests/reference/tokenizer_spm_make.py
Training is deterministic for a fixed input and sentencepiece version (single thread).
"""
import io
import os
import sys

import gguf
import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
DATA = os.path.join(ROOT, "tests", "data")
sys.path.insert(0, HERE)
from tokenizer_ref import read_texts  # noqa: E402


def main():
    src = os.path.join(ROOT, "..", "shared", "data", "wikitext2-valid.txt")
    with open(src, encoding="utf-8") as f:
        lines = [l.strip() for l in f.read(200000).split("\n") if l.strip()]
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=proto, model_type="bpe", vocab_size=1000,
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, character_coverage=1.0, num_threads=1, bos_id=1, eos_id=2, unk_id=0,
        pad_id=-1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())

    n = sp.get_piece_size()
    tokens, scores, types = [], [], []
    for i in range(n):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(2)
        elif sp.is_control(i):
            types.append(3)
        elif sp.is_unused(i):
            types.append(5)
        elif sp.is_byte(i):
            types.append(6)
        else:
            types.append(1)

    path = os.path.join(DATA, "tokenizer_spm.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    texts = read_texts(os.path.join(DATA, "tokenizer_texts.txt"))
    with open(os.path.join(DATA, "tokenizer_expected_spm.txt"), "w") as out:
        out.write("# <text index> <count> <ids...>: tests/reference/tokenizer_spm_make.py\n")
        for idx, b in enumerate(texts):
            try:
                s = b.decode("utf-8")
            except UnicodeDecodeError:
                out.write("%d -\n" % idx)
                continue
            ids = sp.encode(s) if s else []
            out.write("%d %d %s\n" % (idx, len(ids), " ".join(map(str, ids))))
    print("vocab %d, wrote %s (%d bytes)" % (n, path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
