/* peer-tls = off | on | require (peer.h): the mode of the running port,
 * which the listener and the streams read per connection. */
#include "peer-internal.h"

#include "core/error.h"
#include "daemon.h"
#include "log.h"

#include <errno.h>
#include <string.h>

static const char *const names[] = {
    [CVD_PEER_TLS_REQUIRE] = "require",
    [CVD_PEER_TLS_ON] = "on",
    [CVD_PEER_TLS_OFF] = "off",
};

const char *cvd_peer_tls_name(enum cvd_peer_tls m)
{
    return (unsigned)m < sizeof names / sizeof *names ? names[m] : "?";
}

int cvd_peer_tls_parse(const char *s, enum cvd_peer_tls *out)
{
    for (unsigned i = 0; i < sizeof names / sizeof *names; i++)
        if (s && !strcmp(s, names[i])) {
            *out = (enum cvd_peer_tls)i;
            return 0;
        }
    return cv_error(-EINVAL, "peer-tls \"%s\": expected off, on or require",
                    s ? s : "");
}

enum cvd_peer_tls peer_tls_mode(const struct cvd_peer *p, unsigned *gen)
{
    unsigned g;
    int m;

    /* The generation first: a change in between makes the stream stale
     * at once, never a stream of the new mode look old. */
    g = __atomic_load_n(&p->tls_gen, __ATOMIC_ACQUIRE);
    m = __atomic_load_n(&p->tls_mode, __ATOMIC_ACQUIRE);
    if (gen)
        *gen = g;
    return (enum cvd_peer_tls)m;
}

enum cvd_peer_tls cvd_peer_get_tls(const struct cvd_peer *p)
{
    return peer_tls_mode(p, NULL);
}

int cvd_peer_set_tls(struct cvd_peer *p, enum cvd_peer_tls mode)
{
    enum cvd_peer_tls old;

    if ((unsigned)mode > CVD_PEER_TLS_OFF)
        return cv_error(-EINVAL, "peer-tls: no mode %d", (int)mode);
    old = (enum cvd_peer_tls)__atomic_exchange_n(&p->tls_mode, (int)mode,
                                                 __ATOMIC_ACQ_REL);
    if (old == mode)
        return 0;
    __atomic_add_fetch(&p->tls_gen, 1, __ATOMIC_ACQ_REL);
    cvd_metrics_peer_tls_mode(p->d->metrics, (int)mode, 1);
    if (mode == CVD_PEER_TLS_REQUIRE)
        peer_plain_close_all(p);
    cvd_info("peer: peer-tls %s (was %s)", cvd_peer_tls_name(mode),
             cvd_peer_tls_name(old));
    return 0;
}
