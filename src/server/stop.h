/* stop.h - stop strings over text that grows token by token.
 *
 * Generation ends where any stop string first appears; the text before it is the answer.
 * While text streams out, a tail that could still become a stop string is held back until
 * the next tokens decide it. */
#ifndef SRV_STOP_H
#define SRV_STOP_H

#include <stdbool.h>
#include <stddef.h>

#define SRV_MAX_STOP 4        /* stop strings per request (as the OpenAI API) */
#define SRV_MAX_STOP_LEN 256  /* bytes per stop string */

typedef struct {
    char s[SRV_MAX_STOP][SRV_MAX_STOP_LEN + 1];
    size_t len[SRV_MAX_STOP]; /* each >= 1 */
    int n;
} srv_stops;

/* Add one stop string (1..SRV_MAX_STOP_LEN bytes); false if it does not fit. */
bool srv_stops_add(srv_stops *st, const char *s, size_t len);

/* The first position p >= from where some stop string occurs whole inside text[0, len), or
 * -1. Callers pass from = the last safe length: no match can start before it. */
long srv_stops_find(const srv_stops *st, const char *text, size_t len, size_t from);

/* The safe length: the smallest p >= from such that text[p, len) is a proper prefix of some
 * stop string (that tail must wait), or len if there is none. Assumes no whole match. */
size_t srv_stops_safe(const srv_stops *st, const char *text, size_t len, size_t from);

#endif
