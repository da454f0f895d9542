#include "bounds.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/size.h"
#include "nbd/nbd-proto.h"

#define MiB (1024ull * 1024)

void cvd_bounds_defaults(struct cvd_bounds *b)
{
    *b = (struct cvd_bounds){
        /* An argon2id derivation at the default cost holds ~475 MiB. */
        .max_unlocks = 2,
        .unlock_retry_delay = 1,
        .nbd_max_conns = 0,
        .nbd_max_conns_host = 128,
        .nbd_handshake_timeout = 30,
        .nbd_idle_timeout = 0,
        .nbd_buffer_limit = 128 * MiB,
        .nbd_buffer_total = 1024 * MiB,
        .audit_refused_burst = 10,
    };
}

static int parse_uint(const char *key, const char *val, unsigned min,
                      unsigned *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(val, &end, 10);
    if (errno || end == val || *end || val[0] == '-' || v > 1000000000ul)
        return cv_error(-EINVAL, "%s: \"%s\" is not a number", key, val);
    if (v < min)
        return cv_error(-EINVAL, "%s: %lu is below the minimum of %u", key,
                        v, min);
    *out = (unsigned)v;
    return 0;
}

/* Each request needs its whole payload in memory: a connection must be
 * allowed at least one of the largest. */
static int parse_buffer(const char *key, const char *val, uint64_t *out)
{
    int r = cv_parse_size(val, out);

    if (r < 0)
        return cv_error_prefix(r, "%s", key);
    if (*out < NBD_MAX_PAYLOAD)
        return cv_error(-EINVAL, "%s: %s is below the largest request "
                        "(%u MiB)", key, val,
                        (unsigned)(NBD_MAX_PAYLOAD / MiB));
    return 0;
}

int cvd_bounds_set(struct cvd_bounds *b, const char *key, const char *val)
{
    if (!strcmp(key, "max-unlocks"))
        return parse_uint(key, val, 1, &b->max_unlocks);
    if (!strcmp(key, "unlock-retry-delay"))
        return parse_uint(key, val, 0, &b->unlock_retry_delay);
    if (!strcmp(key, "nbd-max-connections"))
        return parse_uint(key, val, 0, &b->nbd_max_conns);
    if (!strcmp(key, "nbd-max-connections-per-host"))
        return parse_uint(key, val, 0, &b->nbd_max_conns_host);
    if (!strcmp(key, "nbd-handshake-timeout"))
        return parse_uint(key, val, 1, &b->nbd_handshake_timeout);
    if (!strcmp(key, "nbd-idle-timeout"))
        return parse_uint(key, val, 0, &b->nbd_idle_timeout);
    if (!strcmp(key, "nbd-buffer-limit"))
        return parse_buffer(key, val, &b->nbd_buffer_limit);
    if (!strcmp(key, "nbd-buffer-total"))
        return parse_buffer(key, val, &b->nbd_buffer_total);
    if (!strcmp(key, "audit-refused-burst"))
        return parse_uint(key, val, 1, &b->audit_refused_burst);
    return 1;
}

int cvd_bounds_check(const struct cvd_bounds *b)
{
    if (b->nbd_buffer_total < b->nbd_buffer_limit)
        return cv_error(-EINVAL, "nbd-buffer-total (%llu MiB) is below "
                        "nbd-buffer-limit (%llu MiB)",
                        (unsigned long long)(b->nbd_buffer_total / MiB),
                        (unsigned long long)(b->nbd_buffer_limit / MiB));
    return 0;
}
