/* HTTPS for the admin API: not yet (needs lib/tls.c). */
#include "admin-internal.h"
#include "daemon.h"
#include "error.h"

#include <errno.h>

int cvd_admin_https_start(struct cvd *d, struct MHD_Daemon *mhd,
                          struct cvd_admin_https **out)
{
    (void)mhd;
    *out = NULL;
    return cv_error(-ENOTSUP, "admin listen %s: HTTPS is not built yet",
                    d->cfg.admin_listen);
}

void cvd_admin_https_stop(struct cvd_admin_https *h)
{
    (void)h;
}
