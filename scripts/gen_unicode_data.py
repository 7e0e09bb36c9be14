#!/usr/bin/env python3
"""Write src/model/unicode_data.c: code point range tables for the pre-tokenizer.

Each table entry is a closed range [lo, hi] of code points sharing the same set of flags:
  SLM_UCD_LETTER     general category L*  (regex \\p{L})
  SLM_UCD_NUMBER     general category N*  (regex \\p{N})
  SLM_UCD_WHITESPACE the White_Space property (regex \\s)
Code points with no flag are not listed. Ranges are sorted and disjoint, so a binary search
finds the flags of any code point.

Usage: python3 scripts/gen_unicode_data.py > src/model/unicode_data.c
The categories come from Python's unicodedata (the Unicode version is written into the file).
"""
import sys
import unicodedata

LETTER, NUMBER, WHITESPACE = 1, 2, 4

# PropList.txt, White_Space=yes (unicodedata has no accessor for this property).
WHITE_SPACE = [(0x0009, 0x000D), (0x0020, 0x0020), (0x0085, 0x0085), (0x00A0, 0x00A0),
               (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F),
               (0x205F, 0x205F), (0x3000, 0x3000)]


def flags_of(cp, ws):
    cat = unicodedata.category(chr(cp))
    f = 0
    if cat[0] == "L":
        f |= LETTER
    if cat[0] == "N":
        f |= NUMBER
    if cp in ws:
        f |= WHITESPACE
    return f


def main():
    ws = set()
    for lo, hi in WHITE_SPACE:
        ws.update(range(lo, hi + 1))
    ranges = []
    for cp in range(0x110000):
        f = flags_of(cp, ws)
        if f == 0:
            continue
        if ranges and ranges[-1][1] == cp - 1 and ranges[-1][2] == f:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp, f])
    out = sys.stdout
    out.write("/* unicode_data.c - code point category ranges (Unicode %s).\n" % unicodedata.unidata_version)
    out.write(" * Written by scripts/gen_unicode_data.py; edit that script, not this file. */\n")
    out.write('#include "unicode.h"\n\n')
    out.write("const slm_ucd_range slm_ucd_ranges[] = {\n")
    for lo, hi, f in ranges:
        out.write("    {0x%05X, 0x%05X, %d},\n" % (lo, hi, f))
    out.write("};\n\n")
    out.write("const size_t slm_ucd_n_ranges = sizeof slm_ucd_ranges / sizeof slm_ucd_ranges[0];\n")


if __name__ == "__main__":
    main()
