/* The admin API: HTTP+JSON (REST) over the unix socket, and over HTTPS
 * when --admin-listen is set.  docs/admin-api.md lists the endpoints. */
#ifndef CRYPTVOLD_ADMIN_H
#define CRYPTVOLD_ADMIN_H

struct cvd;
struct cvd_admin;

int cvd_admin_start(struct cvd *d, struct cvd_admin **out);
void cvd_admin_stop(struct cvd_admin *a);
/* Re-reads the HTTPS certificates (SIGHUP); 0 when there is no HTTPS. */
int cvd_admin_reload_tls(struct cvd_admin *a);

#endif
