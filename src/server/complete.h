/* complete.h - the generation endpoints (/v1/completions, /v1/chat/completions): parse,
 * submit to the scheduler, then either wait for the whole answer or stream it (sse.h). */
#ifndef SRV_COMPLETE_H
#define SRV_COMPLETE_H

#include <stddef.h>

#include <microhttpd.h>

#include "openai.h"
#include "stream.h"

struct srv_server;

/* Answers the request (any error as its JSON error response). A client that goes away while
 * its answer is computed gets its request cancelled and MHD_NO (the connection closes). */
enum MHD_Result srv_complete(struct srv_server *srv, struct MHD_Connection *c, srv_kind kind, const char *body,
                             size_t len);

#endif
