/* sse.h - streaming a request's samples as server-sent events: one `data: {chunk}` per new
 * piece of text (held back while it could be the start of a stop string), a final chunk per
 * sample with its finish_reason, an optional usage chunk, then `data: [DONE]`. The reader
 * runs on the connection's thread and blocks on the stream; a client that went away is
 * noticed (closed socket) and its request cancelled. */
#ifndef SRV_SSE_H
#define SRV_SSE_H

#include <microhttpd.h>

#include "openai.h"
#include "stream.h"

struct srv_server;

/* A response that streams st; takes over *req (moved) and one reference to st. */
struct MHD_Response *srv_sse_response(struct srv_server *srv, srv_stream *st, srv_oai_req *req, const char *id,
                                      long created, int fd);

#endif
