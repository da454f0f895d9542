/* Volume classes: checking and storing them, expanding secret templates,
 * and turning a class into the settings of a new volume. */
#include "classes.h"
#include "daemon.h"
#include "core/error.h"
#include "log.h"
#include "volumes.h"
#include "volumes-util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Longer than any expansion can usefully be: the result must fit a name. */
#define EXPAND_MAX (CVD_TEMPLATE_MAX + 2 * CVD_NAME_MAX)

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* Client text for a message: printable, no quotes, at most len - 1. */
static void shown(const char *s, size_t n, char *buf, size_t len)
{
    size_t i;

    for (i = 0; i < n && s[i] && i + 1 < len; i++)
        buf[i] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' ? s[i] : '?';
    buf[i] = '\0';
}

/* The value of the placeholder at p ("${...}"), its length in *skip. */
static int placeholder(const char *p, const char *cls, const char *volume,
                       const char **val, size_t *skip)
{
    const char *end = strchr(p, '}');
    char name[40];

    if (!end)
        return cv_error(-EINVAL, "secret template: \"${\" without a closing "
                        "\"}\"");
    *skip = (size_t)(end - p) + 1;
    if (*skip == 14 && !strncmp(p, "${volume.name}", 14))
        *val = volume;
    else if (*skip == 13 && !strncmp(p, "${class.name}", 13))
        *val = cls;
    else {
        shown(p, *skip, name, sizeof name);
        return cv_error(-EINVAL, "secret template: unknown placeholder "
                        "\"%s\" (use ${volume.name} or ${class.name})", name);
    }
    return 0;
}

/* tmpl with its placeholders replaced, into out (EXPAND_MAX + 1 bytes;
 * longer results are cut, which the name check then refuses). */
static int expand(const char *tmpl, const char *cls, const char *volume,
                  char *out)
{
    const char *p = tmpl, *val = "";
    size_t n = 0, skip = 0, len;
    char c[2] = "";
    int r;

    while (*p) {
        if (p[0] == '$' && p[1] == '{') {
            r = placeholder(p, cls, volume, &val, &skip);
            if (r < 0)
                return r;
        } else if (name_char(*p)) {
            c[0] = *p;
            val = c;
            skip = 1;
        } else {
            return cv_error(-EINVAL, "secret template: character '%c' "
                            "(position %zu) cannot be in a secret name "
                            "(letters, digits, '.', '_', '-')",
                            *p >= 0x20 && *p < 0x7f ? *p : '?',
                            (size_t)(p - tmpl) + 1);
        }
        len = strlen(val);
        if (n + len > EXPAND_MAX)
            len = EXPAND_MAX - n;
        memcpy(out + n, val, len);
        n += len;
        p += skip;
    }
    out[n] = '\0';
    return 0;
}

int cvd_class_expand(const char *tmpl, const char *cls, const char *volume,
                     char out[CVD_NAME_MAX + 1])
{
    char buf[EXPAND_MAX + 1], safe[CVD_NAME_MAX + 4];
    int r = expand(tmpl, cls, volume, buf);

    if (r < 0)
        return r;
    if (!cvd_name_valid(buf)) {
        shown(buf, CVD_NAME_MAX, safe, CVD_NAME_MAX + 1);
        return cv_error(-EINVAL, "secret template \"%s\" makes \"%s%s\", "
                        "which is not a valid secret name (1 to %d letters, "
                        "digits, '.', '_' or '-', starting with a letter or "
                        "digit)", tmpl, safe, strlen(buf) > CVD_NAME_MAX ?
                        "..." : "", CVD_NAME_MAX);
    }
    memcpy(out, buf, strlen(buf) + 1);     /* valid: at most the max */
    return 0;
}

int cvd_parse_cipher(const char *what, const char *cipher, unsigned key_bits,
                     unsigned *aes_bits)
{
    if (!strcmp(cipher, "aes-256") || !strcmp(cipher, "aes-128")) {
        if (key_bits)
            return cv_error(-EINVAL, "%s: a key size goes with cipher "
                            "aes-xts-plain64, not %s (which says it)", what,
                            cipher);
        *aes_bits = cipher[4] == '2' ? 256 : 128;
        return 0;
    }
    if (strcmp(cipher, "aes-xts-plain64"))
        return cv_error(-EINVAL, "%s: cipher \"%.32s\" (use aes-xts-plain64 "
                        "with key size 512 or 256, or aes-256 or aes-128)",
                        what, cipher);
    if (key_bits != 0 && key_bits != 512 && key_bits != 256)
        return cv_error(-EINVAL, "%s: key size %u (aes-xts-plain64 takes 512 "
                        "bits for AES-256 or 256 for AES-128)", what, key_bits);
    *aes_bits = key_bits == 256 ? 128 : 256;
    return 0;
}

int cvd_class_check(struct cvd_class_rec *c)
{
    char buf[EXPAND_MAX + 1];
    int r = cvd_check_name("class", c->name);

    if (r < 0)
        return r;
    if (strcmp(c->type, "luks2") && strcmp(c->type, "luks1"))
        return cv_error(-EINVAL, "class %s: type \"%.32s\" (use luks2 or "
                        "luks1)", c->name, c->type);
    if (c->aes_bits != 256 && c->aes_bits != 128)
        return cv_error(-EINVAL, "class %s: AES-%u (use AES-256 or AES-128)",
                        c->name, c->aes_bits);
    if (c->replicas < 1)
        return cv_error(-EINVAL, "class %s: replicas must be at least 1",
                        c->name);
    if (c->secret[0] && c->secret_template[0])
        return cv_error(-EINVAL, "class %s: a secret (one for all volumes) "
                        "or a secret template (one per volume), not both",
                        c->name);
    if (c->secret[0] && (r = cvd_check_name("secret", c->secret)) < 0)
        return cv_error_prefix(r, "class %s", c->name);
    /* The placeholders and characters now; whether a volume's name makes
     * a valid secret name is known only at volume create. */
    if (c->secret_template[0] &&
        (r = expand(c->secret_template, c->name, "v", buf)) < 0)
        return cv_error_prefix(r, "class %s", c->name);
    c->encrypted = c->encrypted || c->secret[0] || c->secret_template[0];
    return 0;
}

static void describe(const struct cvd_class_rec *c, char *buf, size_t len)
{
    if (!c->encrypted)
        snprintf(buf, len, "not encrypted");
    else if (c->secret[0])
        snprintf(buf, len, "%s AES-%u, secret \"%s\" for all volumes",
                 c->type, c->aes_bits, c->secret);
    else if (c->secret_template[0])
        snprintf(buf, len, "%s AES-%u, secret \"%s\" per volume", c->type,
                 c->aes_bits, c->secret_template);
    else
        snprintf(buf, len, "%s AES-%u, a generated secret per volume",
                 c->type, c->aes_bits);
}

int cvd_class_create(struct cvd *d, const struct cvd_class_rec *in,
                     struct cvd_class_rec *out)
{
    struct cvd_class_rec c = *in;
    char what[CVD_TEMPLATE_MAX + 64];
    int r = cvd_class_check(&c);

    if (r < 0)
        return r;
    c.created = (int64_t)time(NULL);
    r = d->meta->ops->class_add(d->meta, &c);
    if (r < 0)
        return r;
    describe(&c, what, sizeof what);
    cvd_info("class %s: created (%s, %u replica%s)", c.name, what,
             c.replicas, c.replicas == 1 ? "" : "s");
    if (out)
        *out = c;
    return 0;
}

int cvd_class_get(struct cvd *d, const char *name, struct cvd_class_rec *out)
{
    int r = cvd_check_name("class", name);

    return r < 0 ? r : d->meta->ops->class_get(d->meta, name, out);
}

int cvd_class_delete(struct cvd *d, const char *name)
{
    char used_by[CVD_NAME_MAX + 1];
    int r = cvd_check_name("class", name);

    if (r == 0)
        r = d->meta->ops->class_remove(d->meta, name, used_by);
    if (r == 0)
        cvd_info("class %s: deleted", name);
    return r;
}

/* Nodes that can hold a replica.  A cluster is this one node until
 * replication exists; then the store's node list answers. */
/* CLUSTER-KEK HOOK: a class that is not encrypted (no --encrypted, no
 * secret, no template) makes plaintext volumes while cluster encryption
 * is Disabled.  With it Enabled such a volume must instead get the
 * cluster-KEK keyslot alone: decide that here (d->meta->ops->cluster_get)
 * and tell volume create through the request. */
static int class_makes_plaintext(struct cvd *d, const struct cvd_class_rec *c)
{
    (void)d;
    return !c->encrypted;
}

/* A field of the request that the class sets: refused, not overridden. */
static int conflict(const struct cvd_volume_req *req, const char *field)
{
    return cv_error(-EINVAL, "volume %s: \"%s\" conflicts with class %s "
                    "(the class sets type, cipher, secret and encryption)",
                    req->name, field, req->class_name);
}

int cvd_class_volume_req(struct cvd *d, const struct cvd_volume_req *req,
                         struct cvd_volume_req *out,
                         char secret[CVD_NAME_MAX + 1])
{
    struct cvd_class_rec c;
    int r;

    *out = *req;
    if (!req->class_name)
        return 0;
    r = cvd_check_name("volume", req->name);
    if (r == 0 && (r = cvd_class_get(d, req->class_name, &c)) < 0)
        cv_error_prefix(r, "volume %s", req->name);
    if (r < 0)
        return r;
    if (req->secret)
        return conflict(req, "secret");
    if (req->plaintext)
        return conflict(req, "plaintext");
    /* In a cluster, volume create places them (and says when it cannot);
     * a replica count given with the class overrides the class's. */
    if (!d->node && c.replicas > 1)
        return cv_error(-EINVAL, "volume %s: class %s asks for %u replicas; "
                        "this cluster has 1 node", req->name, c.name,
                        c.replicas);
    if (!req->replicas)
        out->replicas = c.replicas;
    out->luks_version = !strcmp(c.type, "luks1") ? 1 : 2;
    out->aes_bits = c.aes_bits;
    out->plaintext = class_makes_plaintext(d, &c);
    out->secret = NULL;
    if (out->plaintext)
        return 0;
    if (c.secret[0]) {
        snprintf(secret, CVD_NAME_MAX + 1, "%s", c.secret);
        out->secret = secret;
    } else if (c.secret_template[0]) {
        r = cvd_class_expand(c.secret_template, c.name, req->name, secret);
        if (r < 0)
            return cv_error_prefix(r, "volume %s: class %s", req->name,
                                   c.name);
        out->secret = secret;
    }
    return 0;
}
