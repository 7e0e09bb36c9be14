/* http.c - libmicrohttpd plumbing: daemon, routing, request bodies, plain responses. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "complete.h"
#include "server.h"

struct srv_http {
    struct MHD_Daemon *d;
    srv_server *srv;
    int port;
};

typedef enum { R_COMPLETIONS, R_CHAT, R_MODELS, R_HEALTH, R_METRICS } route_id;

static const struct {
    const char *path;
    const char *method;
    route_id id;
} routes[] = {
    {"/v1/completions", "POST", R_COMPLETIONS},
    {"/v1/chat/completions", "POST", R_CHAT},
    {"/v1/models", "GET", R_MODELS},
    {"/health", "GET", R_HEALTH},
    {"/metrics", "GET", R_METRICS},
};

/* One HTTP request's state across the access handler's calls. */
typedef struct {
    route_id route;
    char *body;
    size_t len, cap;
    bool too_big;   /* the body passed max_body: discarded, answered with 413 */
    bool answered;  /* a response was queued before the body was read */
} req_ctx;

enum MHD_Result srv_http_send(struct MHD_Connection *c, unsigned status, const char *type, char *body) {
    if (!body) {
        static const char oom[] =
            "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
        body = strdup(oom);
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        type = "application/json";
        if (!body) return MHD_NO;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

enum MHD_Result srv_http_send_error(struct MHD_Connection *c, const srv_error *e) {
    return srv_http_send(c, (unsigned)e->status, "application/json", srv_oai_error_json(e));
}

static enum MHD_Result send_err(struct MHD_Connection *c, int status, const char *type, const char *code,
                                const char *msg) {
    srv_error e;
    srv_error_set(&e, status, type, code, NULL, "%s", msg);
    return srv_http_send_error(c, &e);
}

bool srv_http_peer_alive(int fd) {
    if (fd < 0) return true;
    char b;
    ssize_t r = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0) return false;
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
    return true;
}

int srv_http_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? (int)ci->connect_fd : -1;
}

static enum MHD_Result serve_get(srv_server *srv, struct MHD_Connection *c, route_id r) {
    switch (r) {
    case R_HEALTH:
        if (__atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE))
            return srv_http_send(c, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json",
                                 strdup("{\"status\":\"shutting down\"}"));
        return srv_http_send(c, MHD_HTTP_OK, "application/json", strdup("{\"status\":\"ok\"}"));
    case R_MODELS:
        return srv_http_send(c, MHD_HTTP_OK, "application/json", srv_oai_models_json(&srv->oai, srv->started));
    case R_METRICS:
        return srv_http_send(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", srv_metrics_text(srv));
    default:
        return send_err(c, 404, "not_found_error", "not_found", "no such endpoint");
    }
}

/* First call for a request: route it, and refuse early what can be refused from the headers. */
static enum MHD_Result begin(srv_http *h, struct MHD_Connection *c, const char *url, const char *method,
                             req_ctx *rq) {
    int found = -1;
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
        if (!strcmp(url, routes[i].path)) found = (int)i;
    if (found < 0) {
        rq->answered = true;
        char msg[200];
        snprintf(msg, sizeof msg, "no endpoint %.120s", url);
        return send_err(c, MHD_HTTP_NOT_FOUND, "not_found_error", "not_found", msg);
    }
    rq->route = routes[found].id;
    const char *want = routes[found].method;
    if (strcmp(method, want) && !(!strcmp(want, "GET") && !strcmp(method, "HEAD"))) {
        rq->answered = true;
        srv_error e;
        srv_error_set(&e, MHD_HTTP_METHOD_NOT_ALLOWED, "invalid_request_error", "method_not_allowed", NULL,
                      "%.16s is not allowed on %s (use %s)", method, routes[found].path, want);
        struct MHD_Response *r;
        char *body = srv_oai_error_json(&e);
        if (!body || !(r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE))) {
            free(body);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, want);
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
        MHD_destroy_response(r);
        return ok;
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || end == cl || n > h->srv->max_body) {
            rq->answered = true;
            char msg[160];
            snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", h->srv->max_body);
            return send_err(c, MHD_HTTP_CONTENT_TOO_LARGE, "invalid_request_error", "request_too_large", msg);
        }
    }
    return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *data, size_t *data_size, void **con_cls) {
    (void)version;
    srv_http *h = cls;
    srv_server *srv = h->srv;
    req_ctx *rq = *con_cls;
    if (!rq) {
        if (!(rq = calloc(1, sizeof *rq))) return MHD_NO;
        *con_cls = rq;
        return begin(h, c, url, method, rq);
    }
    if (rq->answered) { /* the rest of a refused body is dropped */
        *data_size = 0;
        return MHD_YES;
    }
    if (*data_size) {
        size_t n = *data_size;
        *data_size = 0;
        if (rq->too_big || n > srv->max_body - rq->len) {
            rq->too_big = true;
            return MHD_YES;
        }
        if (rq->len + n + 1 > rq->cap) {
            size_t cap = rq->cap ? rq->cap : 4096;
            while (cap < rq->len + n + 1) cap *= 2;
            char *b = realloc(rq->body, cap);
            if (!b) return MHD_NO;
            rq->body = b;
            rq->cap = cap;
        }
        memcpy(rq->body + rq->len, data, n);
        rq->len += n;
        rq->body[rq->len] = 0;
        return MHD_YES;
    }
    if (rq->too_big) {
        char msg[160];
        snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", srv->max_body);
        return send_err(c, MHD_HTTP_CONTENT_TOO_LARGE, "invalid_request_error", "request_too_large", msg);
    }
    if (rq->route == R_COMPLETIONS || rq->route == R_CHAT) {
        if (__atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE))
            return send_err(c, MHD_HTTP_SERVICE_UNAVAILABLE, "server_error", "shutting_down",
                            "the server is shutting down");
        srv_kind kind = rq->route == R_CHAT ? SRV_CHAT : SRV_COMPLETIONS;
        return srv_complete(srv, c, kind, rq->body ? rq->body : "", rq->len);
    }
    return serve_get(srv, c, rq->route);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    req_ctx *rq = *con_cls;
    if (!rq) return;
    free(rq->body);
    free(rq);
    *con_cls = NULL;
}

slm_status srv_http_start(srv_server *srv, const char *host, int port, srv_http **out) {
    *out = NULL;
    if (port < 0 || port > 65535) return slm_error(SLM_ERR_ARG, "port %d is not in [0, 65535]", port);
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    struct sockaddr *sa;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)port);
        sa = (struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)port);
        sa = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        return slm_error(SLM_ERR_ARG, "host '%s' is not an IPv4 or IPv6 address", host);
    }
    srv_http *h = calloc(1, sizeof *h);
    if (!h) return slm_error(SLM_ERR_NOMEM, "http: out of memory");
    h->srv = srv;
    h->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_access, h, MHD_OPTION_SOCK_ADDR, sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)120, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)256, MHD_OPTION_END);
    if (!h->d) {
        free(h);
        return slm_error(SLM_ERR_IO, "cannot listen on %s port %d (in use, or not permitted)", host, port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? (int)di->port : port;
    *out = h;
    return SLM_OK;
}

int srv_http_port(const srv_http *h) { return h->port; }

void srv_http_stop(srv_http *h) {
    if (!h) return;
    MHD_stop_daemon(h->d);
    free(h);
}
