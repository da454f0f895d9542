/* NBD option haggling: fixed newstyle only, with STARTTLS, INFO/GO,
 * structured replies and the base:allocation metadata context. */
#include "audit/audit.h"
#include "meta/meta.h"
#include "metrics/metrics.h"
#include "nbd-internal.h"
#include "nbd-access-internal.h"
#include "volumes/volumes.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "core/error.h"
#include "export/export.h"
#include "log.h"

/* A client that keeps sending options without choosing an export is
 * wasting a thread; the spec lets a server hang up on such a client. */
#define MAX_OPTIONS 1024
/* Options above NBD_MAX_OPTION_LEN are read and refused up to this size;
 * beyond it the client is not speaking NBD in good faith. */
#define MAX_DRAIN_OPTION (1024u * 1024)

#define OPT_NEXT 0

#define REPLY_MAX (NBD_OPT_REPLY_HDR_LEN + 4 + NBD_MAX_STRING)

/* What INFO and GO describe: an open export, or (INFO) a volume described
 * from its record and header without unlocking it. */
struct desc {
    const char *name;
    uint64_t size;
    unsigned block_size;
    unsigned flags;             /* CVD_EXPORT_* */
};

static uint16_t tflags_of(const struct nbd_client *c, unsigned flags)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
                 NBD_FLAG_CAN_MULTI_CONN;

    if (flags & CVD_EXPORT_READONLY)
        f |= NBD_FLAG_READ_ONLY;
    else
        f |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
             NBD_FLAG_SEND_WRITE_ZEROES;
    if (c->structured)
        f |= NBD_FLAG_SEND_DF;
    return f;
}

uint16_t nbd_tflags(const struct nbd_client *c, const struct cvd_export *e)
{
    return tflags_of(c, cvd_export_flags(e));
}

static void desc_of_export(const struct cvd_export *e, struct desc *out)
{
    out->name = cvd_export_name(e);
    out->size = cvd_export_size(e);
    out->block_size = cvd_export_block_size(e);
    out->flags = cvd_export_flags(e);
}

static int send_buf(struct nbd_client *c, const uint8_t *buf, size_t len)
{
    if (len == 0)
        return cv_error(-EOVERFLOW, "option reply does not fit");
    return cvd_conn_write(&c->conn, buf, len);
}

static int reply(struct nbd_client *c, uint32_t opt, uint32_t type)
{
    uint8_t buf[NBD_OPT_REPLY_HDR_LEN];

    return send_buf(c, buf, nbd_build_opt_reply(buf, opt, type, 0));
}

/* An error reply with a message for the user, also logged. */
__attribute__((format(printf, 4, 5)))
static int reply_err(struct nbd_client *c, uint32_t opt, uint32_t type,
                     const char *fmt, ...)
{
    uint8_t buf[REPLY_MAX];
    char msg[NBD_MAX_STRING / 4], name[32];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cvd_debug("nbd: %s: %s refused: %s", c->conn.peer,
              nbd_opt_name(opt, name, sizeof name), msg);
    return send_buf(c, buf, nbd_build_opt_error(buf, sizeof buf, opt, type,
                                                msg));
}

/* The export name as a C string, or NULL with -ENOMEM. */
static char *name_dup(const char *name, uint32_t len)
{
    char *s = strndup(name, len);

    if (!s)
        cv_error(-ENOMEM, "out of memory");
    return s;
}

/* Every attach, granted or refused, goes to the audit log with the client
 * as the actor: who could read a volume is what an auditor asks.  So a
 * granted one whose event cannot be written is refused (the client has
 * read nothing yet). */
static int audit_attach(struct nbd_client *c, const char *name, int r)
{
    char actor[300], object[CVD_NAME_MAX + 16], what[CVD_NAME_MAX + 32];
    int a;

    nbd_access_actor(c, actor, sizeof actor);
    snprintf(object, sizeof object, "volume/%.*s", CVD_NAME_MAX, name);
    a = cvd_audit(c->srv->d->audit, actor, "volume.unlock", object, r == 0,
                  "%s", r == 0 ? "attached over NBD" : cv_last_error());
    if (r < 0 || a == 0)
        return r;
    snprintf(what, sizeof what, "volume %.*s: unlock", CVD_NAME_MAX, name);
    return cvd_audit_refuse(c->srv->d->audit, a, what);
}

/* Why export_get refused: the "reason" of the refusal metric. */
static enum cvd_refusal refusal_of(int r)
{
    switch (r) {
    case -ESHUTDOWN:
        return CVD_REFUSED_SHUTDOWN;
    case -ENOENT:
        return CVD_REFUSED_NO_SUCH_VOLUME;
    case -CV_EWRONGKEY:
        return CVD_REFUSED_WRONG_KEY;
    default:
        return CVD_REFUSED_UNAVAILABLE;
    }
}

/* An attach: the export's counters follow the connection from here. */
static void attached(struct nbd_client *c, const char *name)
{
    struct cvd_metrics *m = c->srv->d->metrics;

    cvd_metrics_volume_put(m, c->vmetrics);
    c->vmetrics = cvd_metrics_volume_get(m, name);
    cvd_metrics_attach(m, c->vmetrics);
}

/* Opens name; on failure the message says why and *rep is the reply. */
static int open_export(struct nbd_client *c, const char *name,
                       struct cvd_export **e, uint32_t *rep)
{
    struct cvd_metrics *m = c->srv->d->metrics;
    int r, missing = 0;

    *rep = NBD_REP_ERR_UNKNOWN;
    if (!*name) {
        cvd_metrics_refused(m, CVD_REFUSED_NO_SUCH_VOLUME);
        return cv_error(-ENOENT, "no default export: name a volume "
                        "(nbd://HOST/VOLUME); NBD_OPT_LIST lists them");
    }
    r = nbd_access_volume(c, name, &missing);
    if (r < 0) {
        cvd_metrics_refused(m, missing ? CVD_REFUSED_NO_SUCH_VOLUME
                                       : CVD_REFUSED_ACCESS);
        *rep = NBD_REP_ERR_POLICY;
        return r;
    }
    r = cvd_export_get(c->srv->d->reg, name, e);
    if (r < 0) {
        cvd_metrics_refused(m, refusal_of(r));
        if (r == -ESHUTDOWN)
            *rep = NBD_REP_ERR_SHUTDOWN;
        if (r != -ENOENT)
            cvd_warn_limited(&c->srv->rl, "nbd-export", "nbd: %s: export "
                             "%s: %s", c->conn.peer, name, cv_last_error());
    }
    if (r == 0 && (r = audit_attach(c, name, 0)) < 0) {
        cvd_metrics_refused(m, CVD_REFUSED_AUDIT);
        cvd_warn("nbd: %s: %s", c->conn.peer, cv_last_error());
        cvd_export_put(*e);
        *e = NULL;
    } else if (r < 0 && r != -ENOENT) {
        audit_attach(c, name, r);
    } else if (r == 0) {
        attached(c, name);
    }
    return r;
}

/* Metadata contexts were chosen for one export name; another loses them. */
static void check_meta_export(struct nbd_client *c, const char *name)
{
    if (c->meta && (!c->meta_export || strcmp(c->meta_export, name)))
        c->meta = 0;
}

static int enter_transmission(struct nbd_client *c, struct cvd_export *e,
                              const char *name)
{
    check_meta_export(c, name);
    c->export = e;
    c->info.size = cvd_export_size(e);
    c->info.tflags = nbd_tflags(c, e);
    c->info.structured = c->structured;
    c->info.meta = c->meta;
    /* Who holds it, with the size it negotiated, for refusals that name
     * the connected clients. */
    snprintf(c->holder.peer, sizeof c->holder.peer, "%s", c->conn.peer);
    snprintf(c->holder.identity, sizeof c->holder.identity, "%s",
             c->conn.tls_peer);
    c->holder.size = c->info.size;
    c->holder.since = (int64_t)time(NULL);
    cvd_export_hold(e, &c->holder);
    return NBD_HS_TRANSMIT;
}

/* INFO: what GO would serve, from the record and the LUKS header; no key
 * is derived and nothing is unlocked (or audited as an unlock). */
static int describe(struct nbd_client *c, const char *name, struct desc *out,
                    uint32_t *rep)
{
    struct cvd_volume_desc vd;
    int r;

    *rep = NBD_REP_ERR_UNKNOWN;
    if (!*name)
        return cv_error(-ENOENT, "no default export: name a volume "
                        "(nbd://HOST/VOLUME); NBD_OPT_LIST lists them");
    r = nbd_access_volume(c, name, NULL);
    if (r < 0) {
        *rep = NBD_REP_ERR_POLICY;
        return r;
    }
    r = cvd_volume_describe(c->srv->d, name, &vd);
    if (r < 0)
        return r;
    out->name = name;
    out->size = vd.size;
    out->block_size = vd.block_size;
    out->flags = (vd.plaintext ? CVD_EXPORT_PLAINTEXT : 0) |
                 (vd.readonly ? CVD_EXPORT_READONLY : 0);
    return 0;
}

static int send_infos(struct nbd_client *c, uint32_t opt,
                      const struct nbd_opt_go *g, const struct desc *e)
{
    uint8_t buf[REPLY_MAX];
    char desc[160];
    int r;

    r = send_buf(c, buf, nbd_build_info_export(buf, sizeof buf, opt, e->size,
                                               tflags_of(c, e->flags)));
    /* Always sent: the block size is a hint worth having. */
    if (r == 0)
        r = send_buf(c, buf, nbd_build_info_block_size(buf, sizeof buf, opt,
                     1, e->block_size, NBD_MAX_PAYLOAD));
    snprintf(desc, sizeof desc, "cryptvol volume %s%s", e->name,
             e->flags & CVD_EXPORT_PLAINTEXT ? " (plaintext)" :
             " (LUKS, aes-xts-plain64)");
    for (uint16_t i = 0; i < g->ninfo && r == 0; i++) {
        uint16_t info = nbd_get16(g->info + 2 * i);

        if (info == NBD_INFO_NAME)
            r = send_buf(c, buf, nbd_build_info_string(buf, sizeof buf, opt,
                         NBD_INFO_NAME, e->name));
        else if (info == NBD_INFO_DESCRIPTION)
            r = send_buf(c, buf, nbd_build_info_string(buf, sizeof buf, opt,
                         NBD_INFO_DESCRIPTION, desc));
    }
    return r;
}

/* NBD_OPT_INFO and NBD_OPT_GO. */
static int opt_go(struct nbd_client *c, uint32_t opt, const uint8_t *data,
                  uint32_t len)
{
    struct nbd_opt_go g;
    struct cvd_export *e = NULL;
    struct desc dsc;
    uint32_t rep;
    char *name;
    int r;

    if (nbd_parse_opt_go(data, len, &g) < 0)
        return reply_err(c, opt, NBD_REP_ERR_INVALID, "%s", cv_last_error());
    name = name_dup(g.name, g.name_len);
    if (!name)
        return -ENOMEM;
    r = opt == NBD_OPT_GO ? open_export(c, name, &e, &rep)
                          : describe(c, name, &dsc, &rep);
    if (r < 0) {
        r = reply_err(c, opt, rep, "%s", cv_last_error());
        goto out;
    }
    if (e)
        desc_of_export(e, &dsc);
    r = send_infos(c, opt, &g, &dsc);
    if (r == 0)
        r = reply(c, opt, NBD_REP_ACK);
    if (r == 0 && opt == NBD_OPT_GO) {
        r = enter_transmission(c, e, name);
        e = NULL;
    }
out:
    if (e)
        cvd_export_put(e);
    free(name);
    return r;
}

/* NBD_OPT_EXPORT_NAME cannot fail politely: any problem hangs up. */
static int opt_export_name(struct nbd_client *c, const uint8_t *data,
                           uint32_t len)
{
    uint8_t buf[NBD_EXPORT_NAME_REPLY_LEN];
    struct cvd_export *e;
    uint32_t rep;
    char *name;
    int r;

    if (!nbd_string_ok((const char *)data, len))
        return cv_error(-EINVAL, "NBD_OPT_EXPORT_NAME: bad export name");
    name = name_dup((const char *)data, len);
    if (!name)
        return -ENOMEM;
    r = open_export(c, name, &e, &rep);
    if (r < 0) {
        cv_error_prefix(r, "NBD_OPT_EXPORT_NAME \"%s\"", name);
        goto out;
    }
    r = cvd_conn_write(&c->conn, buf, nbd_build_export_name_reply(buf,
                       cvd_export_size(e), nbd_tflags(c, e), c->no_zeroes));
    if (r < 0)
        cvd_export_put(e);
    else
        r = enter_transmission(c, e, name);
out:
    free(name);
    return r;
}

static int list_one(void *arg, const char *name)
{
    struct nbd_client *c = arg;
    uint8_t buf[REPLY_MAX];

    if (!nbd_access_visible(c, name))
        return 0;
    return send_buf(c, buf, nbd_build_rep_server(buf, sizeof buf,
                                                 NBD_OPT_LIST, name));
}

static int opt_list(struct nbd_client *c, uint32_t len)
{
    int r;

    if (len)
        return reply_err(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID,
                         "NBD_OPT_LIST takes no data");
    r = cvd_registry_list(c->srv->d->reg, list_one, c);
    if (r < 0) {
        cvd_warn("nbd: %s: listing exports: %s", c->conn.peer,
                 cv_last_error());
        return reply_err(c, NBD_OPT_LIST, NBD_REP_ERR_PLATFORM,
                         "listing exports: %s", cv_last_error());
    }
    return reply(c, NBD_OPT_LIST, NBD_REP_ACK);
}

static int opt_starttls(struct nbd_client *c, uint32_t len)
{
    struct cvd *d = c->srv->d;
    int r;

    if (len)
        return reply_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
                         "NBD_OPT_STARTTLS takes no data");
    if (d->cfg.tls_mode == CVD_TLS_OFF || !d->tls)
        return reply_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY,
                         "TLS is not enabled on this server");
    if (c->conn.ssl)
        return reply_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
                         "TLS is already on");
    /* A client must wait for the ACK before its ClientHello.  What it sent
     * early sits in our plaintext read-ahead, where TLS would never see it
     * (the handshake would stall) and which must never be taken as
     * options: hang up at once. */
    if (cvd_conn_pending(&c->conn))
        return cv_error(-EPROTO, "NBD_OPT_STARTTLS: %zu bytes came with it, "
                        "before the reply (a client must wait for the ACK "
                        "before TLS); closing",
                        cvd_conn_pending(&c->conn));
    r = reply(c, NBD_OPT_STARTTLS, NBD_REP_ACK);
    if (r < 0)
        return r;
    r = cvd_conn_start_tls(&c->conn, d->tls);
    cvd_metrics_tls_handshake(d->metrics, CVD_TLS_NBD, r == 0);
    if (r < 0)
        return r;
    cvd_info("nbd: %s: TLS as %s", c->conn.peer, c->conn.tls_peer);
    nbd_access_tls_peer(c);
    /* What was negotiated in plaintext does not carry over. */
    c->structured = 0;
    c->meta = 0;
    return OPT_NEXT;
}

static int send_context(struct nbd_client *c, uint32_t opt, uint32_t id)
{
    uint8_t buf[REPLY_MAX];

    return send_buf(c, buf, nbd_build_meta_context(buf, sizeof buf, opt, id,
                                                   NBD_META_BASE_ALLOCATION));
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT: the only
 * context is base:allocation. */
static int opt_meta(struct nbd_client *c, uint32_t opt, const uint8_t *data,
                    uint32_t len)
{
    int listing = opt == NBD_OPT_LIST_META_CONTEXT, found = 0, r = 0;
    uint32_t id = listing ? 0 : NBD_META_ID_BASE_ALLOCATION, qlen;
    struct nbd_opt_meta m;
    const char *q;

    if (!c->structured)
        return reply_err(c, opt, NBD_REP_ERR_INVALID,
                         "negotiate NBD_OPT_STRUCTURED_REPLY first");
    if (nbd_parse_opt_meta(data, len, &m) < 0)
        return reply_err(c, opt, NBD_REP_ERR_INVALID, "%s", cv_last_error());
    if (!listing) {
        free(c->meta_export);
        c->meta = 0;
        c->meta_export = name_dup(m.name, m.name_len);
        if (!c->meta_export)
            return -ENOMEM;
    }
    if (listing && m.nqueries == 0)
        found = 1;
    while (!found && nbd_meta_next_query(&m, &q, &qlen))
        found = nbd_meta_query_matches(q, qlen, listing);
    if (found)
        r = send_context(c, opt, id);
    if (r == 0 && found && !listing)
        c->meta = 1;
    return r ? r : reply(c, opt, NBD_REP_ACK);
}

static int opt_structured(struct nbd_client *c, uint32_t len)
{
    if (len)
        return reply_err(c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID,
                         "NBD_OPT_STRUCTURED_REPLY takes no data");
    c->structured = 1;
    return reply(c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK);
}

/* The options that show or open volumes: only for authenticated clients
 * (or anonymous ones, when allowed). */
static int names_exports(uint32_t opt)
{
    return opt == NBD_OPT_LIST || opt == NBD_OPT_INFO || opt == NBD_OPT_GO ||
           opt == NBD_OPT_EXPORT_NAME;
}

/* A refusal by gate() of an option that attaches: counted. */
static void gate_refused(struct nbd_client *c, uint32_t opt,
                         enum cvd_refusal why)
{
    if (opt == NBD_OPT_GO || opt == NBD_OPT_EXPORT_NAME)
        cvd_metrics_refused(c->srv->d->metrics, why);
}

/* Policy that applies before the option itself: shutdown, TLS, and who
 * the client is. */
static int gate(struct nbd_client *c, uint32_t opt, int *handled)
{
    struct cvd_nbd *srv = c->srv;
    int stopping;

    *handled = 1;
    pthread_mutex_lock(&srv->lock);
    stopping = srv->stopping;
    pthread_mutex_unlock(&srv->lock);
    if (opt == NBD_OPT_ABORT) {
        *handled = 0;
    } else if (stopping) {
        gate_refused(c, opt, CVD_REFUSED_SHUTDOWN);
        if (opt == NBD_OPT_EXPORT_NAME)
            return cv_error(-ESHUTDOWN, "server shutting down");
        return reply_err(c, opt, NBD_REP_ERR_SHUTDOWN,
                         "the server is shutting down");
    } else if (srv->d->cfg.tls_mode == CVD_TLS_REQUIRE && !c->conn.ssl &&
               opt != NBD_OPT_STARTTLS) {
        gate_refused(c, opt, CVD_REFUSED_TLS_REQUIRED);
        if (opt == NBD_OPT_EXPORT_NAME)
            return cv_error(-EACCES, "NBD_OPT_EXPORT_NAME before TLS (TLS "
                            "is required)");
        return reply_err(c, opt, NBD_REP_ERR_TLS_REQD,
                         "TLS is required: send NBD_OPT_STARTTLS first");
    } else if (names_exports(opt) && nbd_access_authenticated(c) < 0) {
        gate_refused(c, opt, CVD_REFUSED_UNAUTHENTICATED);
        return opt == NBD_OPT_EXPORT_NAME ? -EACCES :
               reply_err(c, opt, NBD_REP_ERR_POLICY, "%s", cv_last_error());
    } else {
        *handled = 0;
    }
    return 0;
}

static int handle_option(struct nbd_client *c, uint32_t opt,
                         const uint8_t *data, uint32_t len)
{
    char name[32];
    int handled, r = gate(c, opt, &handled);

    if (handled)
        return r;
    switch (opt) {
    case NBD_OPT_EXPORT_NAME:
        return opt_export_name(c, data, len);
    case NBD_OPT_ABORT:
        reply(c, opt, NBD_REP_ACK);     /* the client may be gone already */
        return NBD_HS_END;
    case NBD_OPT_LIST:
        return opt_list(c, len);
    case NBD_OPT_STARTTLS:
        return opt_starttls(c, len);
    case NBD_OPT_INFO: case NBD_OPT_GO:
        return opt_go(c, opt, data, len);
    case NBD_OPT_STRUCTURED_REPLY:
        return opt_structured(c, len);
    case NBD_OPT_LIST_META_CONTEXT: case NBD_OPT_SET_META_CONTEXT:
        return opt_meta(c, opt, data, len);
    default:
        return reply_err(c, opt, NBD_REP_ERR_UNSUP, "%s is not supported",
                         nbd_opt_name(opt, name, sizeof name));
    }
}

/* An option too large to hold: read past it and refuse it. */
static int opt_too_big(struct nbd_client *c, const struct nbd_opt_hdr *h)
{
    char name[32];
    int r;

    if (h->len > MAX_DRAIN_OPTION || h->option == NBD_OPT_EXPORT_NAME)
        return cv_error(-EOVERFLOW, "%s of %u bytes",
                        nbd_opt_name(h->option, name, sizeof name),
                        (unsigned)h->len);
    r = cvd_conn_discard(&c->conn, h->len);
    if (r == 0)
        r = reply_err(c, h->option, NBD_REP_ERR_TOO_BIG, "option of %u "
                      "bytes is above the limit of %u", (unsigned)h->len,
                      NBD_MAX_OPTION_LEN);
    return r;
}

static int next_option(struct nbd_client *c)
{
    uint8_t hdr[NBD_OPT_HDR_LEN], *data;
    struct nbd_opt_hdr h;
    int r;

    r = cvd_conn_read(&c->conn, hdr, sizeof hdr);
    if (r == 0)
        r = nbd_parse_opt_hdr(hdr, &h);
    if (r < 0)
        return r;
    if (++c->nopts > MAX_OPTIONS)
        return cv_error(-EPROTO, "more than %d options", MAX_OPTIONS);
    if (h.len > NBD_MAX_OPTION_LEN)
        return opt_too_big(c, &h);
    data = malloc(h.len + 1);
    if (!data)
        return cv_error(-ENOMEM, "out of memory");
    r = cvd_conn_read(&c->conn, data, h.len);
    if (r == 0)
        r = handle_option(c, h.option, data, h.len);
    free(data);
    return r;
}

int nbd_handshake(struct nbd_client *c)
{
    uint8_t greeting[NBD_HANDSHAKE_LEN], cflags[4];
    uint32_t flags;
    int r;

    nbd_build_greeting(greeting);
    r = cvd_conn_write(&c->conn, greeting, sizeof greeting);
    if (r == 0)
        r = cvd_conn_read(&c->conn, cflags, sizeof cflags);
    if (r == 0)
        r = nbd_parse_client_flags(cflags, &flags);
    if (r < 0)
        return r;
    if (!(flags & NBD_FLAG_C_FIXED_NEWSTYLE))
        return cv_error(-EPROTO, "client does not speak fixed newstyle");
    c->no_zeroes = !!(flags & NBD_FLAG_C_NO_ZEROES);
    do
        r = next_option(c);
    while (r == OPT_NEXT);
    return r;
}
