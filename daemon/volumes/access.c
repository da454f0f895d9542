/* NBD access decisions (access.h). */
#include "access.h"
#include "daemon.h"
#include "core/error.h"
#include "meta/meta.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
    enum cvd_id_kind kind;
    const char *prefix;
} kinds[] = {
    { CVD_ID_CN, "cn" }, { CVD_ID_DNS, "dns" }, { CVD_ID_CERT, "cert" },
    { CVD_ID_PSK, "psk" }, { CVD_ID_UID, "uid" },
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

static const char *prefix_of(enum cvd_id_kind k)
{
    for (size_t i = 0; i < NKINDS; i++)
        if (kinds[i].kind == k)
            return kinds[i].prefix;
    return "?";
}

/* A user id as cryptvold writes it: digits, no leading zero, < 2^32. */
static int uid_ok(const char *s)
{
    unsigned long long v = 0;
    size_t i;

    for (i = 0; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 10)
            return 0;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return i > 0 && (s[0] != '0' || i == 1) && v <= 0xffffffffull;
}

static int name_ok(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > CVD_ID_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

int cvd_identity_parse(const char *s, struct cvd_identity *out)
{
    const char *colon = strchr(s, ':'), *name = s;
    size_t i;

    memset(out, 0, sizeof *out);
    out->kind = CVD_ID_CERT;
    if (colon) {
        for (i = 0; i < NKINDS; i++)
            if (strlen(kinds[i].prefix) == (size_t)(colon - s) &&
                !strncmp(s, kinds[i].prefix, (size_t)(colon - s)))
                break;
        if (i == NKINDS)
            return cv_error(-EINVAL, "identity \"%.80s\": unknown kind (use "
                            "cn:, dns:, cert:, psk: or uid:)", s);
        out->kind = kinds[i].kind;
        name = colon + 1;
    }
    if (!name_ok(name))
        return cv_error(-EINVAL, "identity \"%.80s\": the name must be 1 to "
                        "%d printable ASCII characters", s, CVD_ID_NAME_MAX);
    if (out->kind == CVD_ID_UID && !uid_ok(name))
        return cv_error(-EINVAL, "identity \"%.80s\": a uid is a number "
                        "(uid:1000)", s);
    memcpy(out->name, name, strlen(name) + 1);
    return 0;
}

void cvd_identity_format(const struct cvd_identity *id, char *buf, size_t len)
{
    snprintf(buf, len, "%s:%s", prefix_of(id->kind), id->name);
}

void cvd_client_add(struct cvd_client_ids *c, enum cvd_id_kind kind,
                    const char *name)
{
    size_t len = strlen(name);

    if (c->n >= CVD_CLIENT_IDS_MAX || len == 0 || len > CVD_ID_NAME_MAX)
        return;
    c->id[c->n].kind = kind;
    memcpy(c->id[c->n].name, name, len + 1);
    c->n++;
}

/* Does list entry e name client identity id? */
static int matches(const struct cvd_identity *e, const struct cvd_identity *id)
{
    int cert_name = id->kind == CVD_ID_CN || id->kind == CVD_ID_DNS;

    if (e->kind == CVD_ID_CERT && !cert_name)
        return 0;
    if (e->kind != CVD_ID_CERT && e->kind != id->kind)
        return 0;
    /* DNS names are case-insensitive (RFC 4343); the others are not. */
    if (id->kind == CVD_ID_DNS)
        return !strcasecmp(e->name, id->name);
    return !strcmp(e->name, id->name);
}

static int client_matches(const struct cvd_identity *e,
                          const struct cvd_client_ids *c)
{
    for (size_t i = 0; i < c->n; i++)
        if (matches(e, &c->id[i]))
            return 1;
    return 0;
}

enum cvd_access_verdict cvd_access_decide(const struct cvd_access_entry *l,
                                          size_t n,
                                          const struct cvd_client_ids *c,
                                          int default_open)
{
    int allowed = 0, has_allow = 0;

    for (size_t i = 0; i < n; i++) {
        int m = client_matches(&l[i].id, c);

        if (m && !l[i].allow)
            return CVD_ACCESS_DENIED;
        allowed |= m && l[i].allow;
        has_allow |= l[i].allow;
    }
    if (allowed)
        return CVD_ACCESS_ALLOWED;
    if (has_allow)
        return CVD_ACCESS_NOT_LISTED;
    return default_open ? CVD_ACCESS_ALLOWED : CVD_ACCESS_CLOSED;
}

const char *cvd_access_verdict_name(enum cvd_access_verdict v)
{
    switch (v) {
    case CVD_ACCESS_ALLOWED: return "allowed";
    case CVD_ACCESS_DENIED: return "denied by the access list";
    case CVD_ACCESS_NOT_LISTED: return "not on the access list";
    case CVD_ACCESS_CLOSED: return "no allow entry and nbd-access-default "
                                   "is closed";
    }
    return "?";
}

int cvd_access_from_recs(const struct cvd_access_rec *r, size_t n,
                         struct cvd_access_entry **out)
{
    struct cvd_access_entry *l = NULL;
    int rc = 0;

    *out = NULL;
    if (n == 0)
        return 0;
    l = calloc(n, sizeof *l);
    if (!l)
        return cv_error(-ENOMEM, "access list: out of memory");
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = cvd_identity_parse(r[i].identity, &l[i].id);
        l[i].allow = r[i].allow;
    }
    if (rc < 0) {
        free(l);
        return cv_error_prefix(rc, "stored access list");
    }
    *out = l;
    return 0;
}

static int load(struct cvd *d, enum cvd_access_target t, const char *name,
                struct cvd_access_entry **out, size_t *n)
{
    struct cvd_access_rec *recs = NULL;
    int r = d->meta->ops->access_list(d->meta, t, name, &recs, n);

    if (r == 0)
        r = cvd_access_from_recs(recs, *n, out);
    free(recs);
    return r;
}

int cvd_access_effective(struct cvd *d, const struct cvd_volume_rec *v,
                         struct cvd_access_entry **out, size_t *n,
                         const char **from)
{
    int r = load(d, CVD_ACCESS_VOLUME, v->name, out, n);

    *from = r == 0 && *n ? "volume" : "";
    if (r < 0 || *n || !v->class_name[0])
        return r;
    r = load(d, CVD_ACCESS_CLASS, v->class_name, out, n);
    if (r == 0 && *n)
        *from = "class";
    return r;
}

int cvd_access_check(struct cvd *d, const char *name,
                     const struct cvd_client_ids *c,
                     enum cvd_access_verdict *verdict, char *detail,
                     size_t dlen)
{
    struct cvd_access_entry *l = NULL;
    struct cvd_volume_rec v;
    const char *from = "", *at = strchr(name, '@');
    char volume[CVD_NAME_MAX + 1];
    size_t n = 0;
    int r;

    /* A snapshot ("VOL@SNAP") is opened by whoever may open its volume. */
    snprintf(volume, sizeof volume, "%.*s",
             at ? (int)(at - name) : (int)strlen(name), name);
    if (!cvd_name_valid(volume) || (at && !cvd_name_valid(at + 1)))
        return cv_error(-ENOENT, "volume \"%.64s\": no such volume", name);
    r = d->meta->ops->volume_get(d->meta, volume, &v);
    if (r == 0)
        r = cvd_access_effective(d, &v, &l, &n, &from);
    if (r < 0)
        return r;
    *verdict = cvd_access_decide(l, n, c, !d->cfg.nbd_access_closed);
    if (!from[0])
        snprintf(detail, dlen, "%s (no access list, nbd-access-default %s)",
                 cvd_access_verdict_name(*verdict),
                 d->cfg.nbd_access_closed ? "closed" : "open");
    else
        snprintf(detail, dlen, "%s (access list of %s %s)",
                 cvd_access_verdict_name(*verdict),
                 from, !strcmp(from, "class") ? v.class_name : v.name);
    free(l);
    return 0;
}
