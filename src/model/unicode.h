/* unicode.h - UTF-8 decoding and the code point classes the pre-tokenizers need. */
#ifndef SLM_UNICODE_H
#define SLM_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum {
    SLM_UCD_LETTER = 1,     /* general category L* (\p{L}) */
    SLM_UCD_NUMBER = 2,     /* general category N* (\p{N}) */
    SLM_UCD_WHITESPACE = 4, /* White_Space property (\s) */
};

/* A closed range of code points sharing one set of SLM_UCD_* flags. */
typedef struct {
    uint32_t lo, hi;
    uint32_t flags;
} slm_ucd_range;

/* Sorted, disjoint; code points not listed have no flags (unicode_data.c). */
extern const slm_ucd_range slm_ucd_ranges[];
extern const size_t slm_ucd_n_ranges;

/* Marks a byte that does not start a valid UTF-8 sequence (its code point slot holds
 * SLM_UTF8_INVALID | byte). Such a byte is a class of its own: no SLM_UCD_* flag. */
#define SLM_UTF8_INVALID 0x80000000u

/* Decode one character from s[0..len) (len >= 1). Returns the number of bytes it takes
 * (1..4) and stores the code point. Overlong forms, surrogates, values past U+10FFFF and
 * truncated sequences are not characters: one byte is consumed and *cp gets
 * SLM_UTF8_INVALID | that byte. */
int slm_utf8_decode(const uint8_t *s, size_t len, uint32_t *cp);

/* Encode cp (<= U+10FFFF) into out (4 bytes room); returns the byte count. */
int slm_utf8_encode(uint32_t cp, char *out);

/* Length of the sequence announced by lead byte c: 1..4, or 0 if c cannot start one. */
int slm_utf8_seq_len(uint8_t c);

/* SLM_UCD_* flags of a code point (0 for SLM_UTF8_INVALID values). */
uint32_t slm_ucd_flags(uint32_t cp);

#endif
