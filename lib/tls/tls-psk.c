#include "tls-psk.h"
#include "core/error.h"
#include "core/secmem.h"
#include "core/secret-file.h"

#include <errno.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes hex into out (room for len / 2 bytes).  The message never shows
 * the offending character: it is part of a key. */
static int decode_key(const char *hex, size_t len, unsigned char *out,
                      const char *path, unsigned line)
{
    size_t i;

    if (len == 0)
        return cv_error(-EINVAL, "PSK file %s line %u: empty key", path, line);
    if (len % 2)
        return cv_error(-EINVAL, "PSK file %s line %u: odd number of hex "
                        "digits in the key", path, line);
    if (len / 2 < CV_PSK_MIN_KEY || len / 2 > CV_PSK_MAX_KEY)
        return cv_error(-EINVAL, "PSK file %s line %u: key is %zu bytes; "
                        "use %d to %d (psktool makes 32)", path, line,
                        len / 2, CV_PSK_MIN_KEY, CV_PSK_MAX_KEY);
    for (i = 0; i < len; i += 2) {
        int hi = hexval(hex[i]), lo = hexval(hex[i + 1]);
        if (hi < 0 || lo < 0)
            return cv_error(-EINVAL, "PSK file %s line %u: key has a "
                            "character that is not a hex digit", path, line);
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

/* Parses one line (without its newline) into t->psk[t->n], copying the
 * identity and key to *area. */
static int parse_line(struct cv_psk_table *t, const char *p, size_t len,
                      unsigned line, char **area, const char *path)
{
    const char *colon = memchr(p, ':', len);
    struct cv_psk *e = &t->psk[t->n];
    size_t idlen;
    int r;

    if (!colon)
        return cv_error(-EINVAL, "PSK file %s line %u: no ':' between "
                        "identity and key", path, line);
    idlen = (size_t)(colon - p);
    if (idlen == 0)
        return cv_error(-EINVAL, "PSK file %s line %u: empty identity",
                        path, line);
    if (memchr(p, '\0', len))
        return cv_error(-EINVAL, "PSK file %s line %u: NUL byte", path, line);
    if (cv_psk_find(t, p, idlen))
        return cv_error(-EINVAL, "PSK file %s line %u: identity \"%.*s\" "
                        "appears twice", path, line, (int)idlen, p);
    memcpy(*area, p, idlen);
    (*area)[idlen] = '\0';
    e->identity = *area;
    *area += idlen + 1;
    r = decode_key(colon + 1, len - idlen - 1, (unsigned char *)*area, path,
                   line);
    if (r < 0)
        return r;
    e->key = (unsigned char *)*area;
    e->keylen = (len - idlen - 1) / 2;
    *area += e->keylen;
    t->n++;
    return 0;
}

/* One locked region: the table, up to nlines entries, then identities and
 * keys, which are never longer than the file's text. */
static struct cv_psk_table *table_alloc(size_t nlines, size_t textlen)
{
    size_t len = sizeof(struct cv_psk_table) + nlines * sizeof(struct cv_psk)
                 + textlen + nlines;
    struct cv_psk_table *t = cv_secmem_alloc(len);

    if (!t)
        return NULL;
    t->mem = t;
    t->memlen = len;
    t->psk = (struct cv_psk *)(t + 1);
    return t;
}

static int parse_all(struct cv_psk_table *t, const struct cv_secret *s,
                     char *area, const char *path)
{
    const char *p = s->data, *end = s->data + s->len;
    unsigned line = 0;
    int r;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *next = nl ? nl + 1 : end;
        size_t len = (size_t)((nl ? nl : end) - p);

        line++;
        if (len && p[len - 1] == '\r')      /* files edited on Windows */
            len--;
        if (len) {
            r = parse_line(t, p, len, line, &area, path);
            if (r < 0)
                return r;
        }
        p = next;
    }
    if (t->n == 0)
        return cv_error(-EINVAL, "PSK file %s: no \"identity:hexkey\" lines",
                        path);
    return 0;
}

int cv_psk_table_read(const char *path, struct cv_psk_table **out)
{
    struct cv_secret s = { 0 };
    struct cv_psk_table *t = NULL;
    size_t nlines = 1, i;
    int r;

    *out = NULL;
    r = cv_secret_read_file(path, "PSK file", &s);
    if (r < 0)
        return r;
    for (i = 0; i < s.len; i++)
        nlines += s.data[i] == '\n';
    t = table_alloc(nlines, s.len);
    if (!t) {
        r = cv_error_prefix(-ENOMEM, "PSK file %s", path);
        goto out;
    }
    r = parse_all(t, &s, (char *)(t->psk + nlines), path);
out:
    cv_secret_free(&s);
    if (r < 0)
        cv_psk_table_free(t);
    else
        *out = t;
    return r;
}

const struct cv_psk *cv_psk_find(const struct cv_psk_table *t,
                                 const void *identity, size_t idlen)
{
    size_t i;

    for (i = 0; i < t->n; i++)
        if (strlen(t->psk[i].identity) == idlen &&
            !memcmp(t->psk[i].identity, identity, idlen))
            return &t->psk[i];
    return NULL;
}

void cv_psk_table_free(struct cv_psk_table *t)
{
    if (t)
        cv_secmem_free(t->mem, t->memlen);
}
