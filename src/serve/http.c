/* http.c: the server's HTTP layer on GNU libmicrohttpd (Debian: libmicrohttpd-dev), behind
 * serve_internal.h's small interface. Chosen because it is a C library that Debian keeps
 * current, does HTTP/1.1 parsing, chunked responses, per-connection timeouts and connection
 * limits itself, and has a thread-per-connection mode in which a streamed body may block
 * until the engine has the next token. Bodies are collected up to a limit; a larger one is
 * refused from its Content-Length or as it arrives. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "serve/serve_internal.h"

struct th_http {
    struct MHD_Daemon *d;
    th_http_handler handler;
    void *user;
    size_t max_body;
    int port;
};

typedef struct {
    char *body;
    size_t len, cap;
    int too_large;
    th_http_stream stream; /* the stream handed to MHD, told in on_completed */
    int streaming;
} conn_ctx;

void th_http_resp_header(th_http_resp *r, const char *name, const char *fmt, ...) {
    if (r->n_headers >= TH_HTTP_MAX_HEADERS) return;
    snprintf(r->headers[r->n_headers][0], sizeof r->headers[0][0], "%s", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->headers[r->n_headers][1], sizeof r->headers[0][1], fmt, ap);
    va_end(ap);
    r->n_headers++;
}

const char *th_http_header(const th_http_req *r, const char *name) {
    return MHD_lookup_connection_value((struct MHD_Connection *)r->conn, MHD_HEADER_KIND, name);
}

static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    conn_ctx *c = cls;
    ssize_t n = c->stream.next(c->stream.user, buf, max);
    if (n > 0) return n;
    return n == 0 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
}

static enum MHD_Result respond(th_http *h, struct MHD_Connection *conn, conn_ctx *c, const char *url,
                               const char *method) {
    th_http_req req = {method, url, c->body ? c->body : "", c->len, c->too_large, conn};
    th_http_resp resp;
    memset(&resp, 0, sizeof resp);
    resp.status = 500;
    h->handler(h->user, &req, &resp);
    struct MHD_Response *r;
    if (resp.stream.next) {
        c->stream = resp.stream;
        c->streaming = 1;
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, read_stream, c, NULL);
    } else {
        r = MHD_create_response_from_buffer(resp.len, resp.body ? resp.body : (void *)"",
                                            resp.body ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_PERSISTENT);
        th_free(resp.body);
    }
    if (!r) {
        if (c->streaming) resp.stream.done(resp.stream.user, 0);
        c->streaming = 0;
        return MHD_NO;
    }
    if (resp.content_type) MHD_add_response_header(r, "Content-Type", resp.content_type);
    for (int i = 0; i < resp.n_headers; i++) MHD_add_response_header(r, resp.headers[i][0], resp.headers[i][1]);
    enum MHD_Result q = MHD_queue_response(conn, (unsigned)resp.status, r);
    MHD_destroy_response(r);
    if (q != MHD_YES && c->streaming) {
        resp.stream.done(resp.stream.user, 0);
        c->streaming = 0;
    }
    return q;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    th_http *h = cls;
    conn_ctx *c = *con_cls;
    if (!c) {
        c = th_calloc(1, sizeof *c);
        if (!c) return MHD_NO;
        *con_cls = c;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > h->max_body) {
            c->too_large = 1;
            return respond(h, conn, c, url, method);
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!c->too_large && c->len + *upload_size <= h->max_body) {
            if (c->len + *upload_size + 1 > c->cap) {
                size_t cap = (c->len + *upload_size + 1) * 2;
                if (cap > h->max_body + 1) cap = h->max_body + 1;
                char *b = th_alloc(cap);
                if (!b) return MHD_NO;
                if (c->len) memcpy(b, c->body, c->len);
                th_free(c->body);
                c->body = b;
                c->cap = cap;
            }
            memcpy(c->body + c->len, upload, *upload_size);
            c->len += *upload_size;
            c->body[c->len] = 0;
        } else {
            c->too_large = 1;
            th_free(c->body);
            c->body = NULL;
            c->len = c->cap = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return respond(h, conn, c, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)conn;
    conn_ctx *c = *con_cls;
    if (!c) return;
    if (c->streaming) c->stream.done(c->stream.user, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    th_free(c->body);
    th_free(c);
    *con_cls = NULL;
}

th_status th_http_start(const char *host, int port, size_t max_body, int timeout_s, int max_connections,
                        th_http_handler handler, void *user, th_http **out) {
    *out = NULL;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return th_fail(TH_ERR_INVALID, "serve: host '%s' is not an IPv4 address", host);
    if (port < 0 || port > 65535) return th_fail(TH_ERR_INVALID, "serve: port %d is outside [0, 65535]", port);
    th_http *h = th_calloc(1, sizeof *h);
    if (!h) return th_fail(TH_ERR_NOMEM, "serve: out of memory");
    h->handler = handler;
    h->user = user;
    h->max_body = max_body;
    h->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL,
                            (uint16_t)port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)timeout_s, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)max_connections, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_END);
    if (!h->d) {
        th_free(h);
        return th_fail(TH_ERR_IO, "serve: cannot listen on %s:%d (in use, or not an address of this machine)", host,
                       port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : port;
    *out = h;
    return TH_OK;
}

int th_http_port(const th_http *h) { return h->port; }

void th_http_stop(th_http *h) {
    if (!h) return;
    MHD_stop_daemon(h->d);
    th_free(h);
}
