/* stop.c - stop-string search and the held-back tail. */
#include "stop.h"

#include <string.h>

bool srv_stops_add(srv_stops *st, const char *s, size_t len) {
    if (st->n >= SRV_MAX_STOP || len == 0 || len > SRV_MAX_STOP_LEN) return false;
    memcpy(st->s[st->n], s, len);
    st->s[st->n][len] = 0;
    st->len[st->n] = len;
    st->n++;
    return true;
}

long srv_stops_find(const srv_stops *st, const char *text, size_t len, size_t from) {
    for (size_t p = from; p < len; p++)
        for (int i = 0; i < st->n; i++)
            if (st->len[i] <= len - p && !memcmp(text + p, st->s[i], st->len[i])) return (long)p;
    return -1;
}

size_t srv_stops_safe(const srv_stops *st, const char *text, size_t len, size_t from) {
    for (size_t p = from; p < len; p++)
        for (int i = 0; i < st->n; i++)
            if (st->len[i] > len - p && !memcmp(text + p, st->s[i], len - p)) return p;
    return len;
}
