/* Plaintext peer connections (peer-tls on or off, peer.h): no TLS, so no
 * certificate proves who calls.  What stands in for it is weaker and
 * meant to be: the connection starts with a HELLO naming a member, from
 * that member's registered host, and may carry only the types registered
 * CVD_PEER_PLAIN_OK (replication's, which move ciphertext and are fenced
 * by epochs).  Keys, KEKs and admin requests stay on TLS.  A cluster is
 * run so while it moves to TLS (docs/cluster.md, "peer-tls"). */
#include "peer-internal.h"

#include "core/error.h"
#include "daemon.h"
#include "log.h"
#include "meta/meta.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define HELLO_TEXT "plaintext peer connections need peer-tls on or off on "

/* ---- the client -------------------------------------------------------- */

int peer_plain_hello(struct peer_link *l)
{
    const char *me = l->d->cfg.node_name;
    uint8_t hdr[CVD_PEER_HEADER], buf[PEER_ERROR_TEXT_MAX + 4];
    struct peer_hdr h;
    int r;

    if (!me || !me[0])
        return cv_error(-EINVAL, "no node-name to say hello with");
    r = peer_write_frame(&l->io, CVD_PEER_HELLO, 0, me, strlen(me));
    if (r == 0)
        r = peer_io_read(&l->io, hdr, sizeof hdr);
    if (r == 0)
        r = peer_hdr_unpack(hdr, &h);
    if (r == 0 && h.len > sizeof buf)
        r = cv_error(-EPROTO, "a HELLO answer of %u bytes", h.len);
    if (r == 0 && h.len)
        r = peer_io_read(&l->io, buf, h.len);
    if (r == 0 && h.type == CVD_PEER_ERROR)
        return peer_error_of("refused", buf, h.len);
    if (r == 0 && h.type != CVD_PEER_HELLO)
        r = cv_error(-EPROTO, "answered HELLO with type 0x%04x", h.type);
    if (r < 0)
        return cv_error_prefix(r, "plaintext HELLO");
    l->session = 1;
    l->plain = 1;
    cvd_metrics_peer_plain_session(l->d->metrics, l->name, l->host, 1);
    return 0;
}

/* ---- the server -------------------------------------------------------- */

/* Refused, saying why to a peer that speaks our protocol. */
static int refuse(struct peer_conn *c, enum cvd_peer_refusal why,
                  const char *name, const char *text)
{
    peer_refuse(&c->p->refusals, c->p->d->metrics, why, c->host, c->addr,
                name, text);
    peer_io_deadline(&c->io, PEER_IO_MS);
    peer_write_error(&c->io, 0, EACCES, text);
    c->linger = 1;
    return -1;
}

/* The member's registered host (its address without the port) must be
 * where the connection comes from: on plaintext nothing else says it is
 * the member.  Hosts are compared as strings: addresses are numeric. */
static int from_member_host(struct peer_conn *c, const char *name,
                            char *why, size_t len)
{
    struct cvd *d = c->p->d;
    struct cvd_node_rec n;
    char host[256];
    const char *port;
    int r;

    if (!d->meta || !d->meta->ops->node_get) {
        snprintf(why, len, "no metadata store to check %s's address in",
                 name);
        return 0;
    }
    memset(&n, 0, sizeof n);
    r = d->meta->ops->node_get(d->meta, name, &n);
    if (r == 0)
        r = peer_split_hostport("address", n.address, host, sizeof host,
                                &port);
    if (r < 0) {
        snprintf(why, len, "%s's address: %s", name, cv_last_error());
        return 0;
    }
    if (strcmp(host, c->host)) {
        snprintf(why, len, "%s's address is %s, the connection came from %s",
                 name, host, c->host);
        return 0;
    }
    return 1;
}

/* The first frame of a plaintext connection: HELLO NAME. */
static int read_hello(struct peer_conn *c, char *name, size_t len)
{
    uint8_t hdr[CVD_PEER_HEADER];
    struct peer_hdr h;
    int r;

    peer_io_deadline(&c->io, PEER_HANDSHAKE_MS);
    r = peer_io_read(&c->io, hdr, sizeof hdr);
    if (r == 0)
        r = peer_hdr_unpack(hdr, &h);
    if (r == 0 && (h.type != CVD_PEER_HELLO || !h.len || h.len >= len))
        r = cv_error(-EPROTO, "a plaintext connection must start with "
                     "HELLO NAME (type 0x%04x, %u bytes)", h.type, h.len);
    if (r == 0)
        r = peer_io_read(&c->io, name, h.len);
    if (r < 0)
        return r;
    name[h.len] = '\0';
    for (size_t i = 0; i < h.len; i++)
        if (name[i] <= 0x20 || name[i] >= 0x7f)
            return cv_error(-EPROTO, "HELLO: a name that is no node's");
    return 0;
}

/* Under p->lock: a switch to require closes plaintext connections, so
 * one is admitted only while the mode is not require. */
static int admit_plain(struct peer_conn *c, const char *name)
{
    struct cvd_peer *p = c->p;
    int ok;

    pthread_mutex_lock(&p->lock);
    ok = cvd_peer_get_tls(p) != CVD_PEER_TLS_REQUIRE;
    if (ok)
        __atomic_store_n(&c->plain, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&p->lock);
    if (!ok)
        return refuse(c, CVD_PEER_REFUSED_PLAINTEXT, name, HELLO_TEXT
                      "this node (it is require now)");
    snprintf(c->name, sizeof c->name, "%s", name);
    cvd_metrics_peer_plain_session(p->d->metrics, c->name, c->host, 1);
    cvd_debug("peer: %s: %s connected (plaintext)", c->addr, c->name);
    return 0;
}

int peer_plain_accept(struct peer_conn *c)
{
    char name[CV_TLS_NAME_MAX + 1], why[1024];
    int m;

    if (cvd_peer_get_tls(c->p) == CVD_PEER_TLS_REQUIRE)
        return refuse(c, CVD_PEER_REFUSED_PLAINTEXT, NULL, HELLO_TEXT
                      "this node (it requires TLS)");
    if (read_hello(c, name, sizeof name) < 0) {
        cvd_info_limited(&c->p->rl, "peer-hello", "peer: %s: %s", c->addr,
                         cv_last_error());
        return refuse(c, CVD_PEER_REFUSED_PLAINTEXT, NULL, cv_last_error());
    }
    cv_clear_error();
    m = c->p->member(c->p->member_arg, name);
    if (m != CVD_PEER_MEMBER)
        return refuse(c, m == CVD_PEER_REMOVED ? CVD_PEER_REFUSED_REMOVED :
                      m < 0 ? CVD_PEER_REFUSED_UNVERIFIED :
                      CVD_PEER_REFUSED_NOT_MEMBER, name,
                      m < 0 ? cv_last_error() : "not a member");
    if (!from_member_host(c, name, why, sizeof why))
        return refuse(c, CVD_PEER_REFUSED_PLAIN_HOST, name, why);
    if (admit_plain(c, name) < 0)
        return -1;
    peer_io_deadline(&c->io, PEER_IO_MS);
    return peer_write_frame(&c->io, CVD_PEER_HELLO, 0, NULL, 0) < 0 ? -1 : 0;
}

/* A type that needs TLS on a plaintext connection: refused, and the
 * connection closes. */
int peer_plain_refuse_type(struct peer_conn *c, const struct peer_hdr *h)
{
    char text[128];

    snprintf(text, sizeof text, "message type 0x%04x needs TLS (this "
             "connection is plaintext)", h->type);
    peer_refuse(&c->p->refusals, c->p->d->metrics, CVD_PEER_REFUSED_PLAIN_TYPE,
                c->host, c->addr, c->name, text);
    peer_io_deadline(&c->io, PEER_IO_MS);
    peer_write_error(&c->io, h->id, EACCES, text);
    c->linger = 1;
    return cv_error(-EACCES, "%s", text);
}

void peer_plain_close_all(struct cvd_peer *p)
{
    pthread_mutex_lock(&p->lock);
    for (struct peer_conn *c = p->conns; c; c = c->next)
        if (__atomic_load_n(&c->plain, __ATOMIC_RELAXED))
            shutdown(c->io.fd, SHUT_RDWR);
    pthread_mutex_unlock(&p->lock);
}
