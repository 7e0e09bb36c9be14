/* unicode.c - UTF-8 decoding and code point classes. */
#include "unicode.h"

int slm_utf8_seq_len(uint8_t c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0; /* continuation byte, overlong lead C0/C1, or F5..FF */
}

int slm_utf8_decode(const uint8_t *s, size_t len, uint32_t *cp) {
    uint8_t c = s[0];
    int n = slm_utf8_seq_len(c);
    if (n == 1) {
        *cp = c;
        return 1;
    }
    if (n == 0 || (size_t)n > len) goto invalid;
    uint32_t v = c & (0x7F >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) goto invalid;
        v = (v << 6) | (s[i] & 0x3F);
    }
    /* Reject overlong 3- and 4-byte forms, surrogates and values past U+10FFFF
     * (2-byte overlongs are excluded by the lead byte check). */
    if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10FFFF)) || (v >= 0xD800 && v <= 0xDFFF))
        goto invalid;
    *cp = v;
    return n;
invalid:
    *cp = SLM_UTF8_INVALID | c;
    return 1;
}

int slm_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

uint32_t slm_ucd_flags(uint32_t cp) {
    if (cp & SLM_UTF8_INVALID) return 0;
    if (cp < 0x80) { /* ASCII fast path */
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return SLM_UCD_LETTER;
        if (cp >= '0' && cp <= '9') return SLM_UCD_NUMBER;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return SLM_UCD_WHITESPACE;
        return 0;
    }
    size_t lo = 0, hi = slm_ucd_n_ranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < slm_ucd_ranges[mid].lo)
            hi = mid;
        else if (cp > slm_ucd_ranges[mid].hi)
            lo = mid + 1;
        else
            return slm_ucd_ranges[mid].flags;
    }
    return 0;
}
