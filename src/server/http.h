/* http.h - the libmicrohttpd front end: one thread per connection, bodies collected up to
 * the size limit, routing to the endpoints, JSON and error responses. */
#ifndef SRV_HTTP_H
#define SRV_HTTP_H

#include <stdbool.h>

#include <microhttpd.h>

#include "core/status.h"
#include "openai.h"

struct srv_server;
typedef struct srv_http srv_http;

slm_status srv_http_start(struct srv_server *srv, const char *host, int port, srv_http **out);
int srv_http_port(const srv_http *h);
void srv_http_stop(srv_http *h); /* closes every connection, joins their threads; NULL ok */

/* Queue a response; body is taken over (freed here); NULL body: 500. */
enum MHD_Result srv_http_send(struct MHD_Connection *c, unsigned status, const char *type, char *body);
enum MHD_Result srv_http_send_error(struct MHD_Connection *c, const srv_error *e);

/* The client socket still open? (false once the peer closed or reset it) */
bool srv_http_peer_alive(int fd);
/* The socket of a connection, or -1. */
int srv_http_fd(struct MHD_Connection *c);

#endif
