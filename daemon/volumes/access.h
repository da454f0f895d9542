/* Who may open a volume over NBD: identities, access lists, and the
 * decision (docs/nbd.md, "Who may open a volume").
 *
 * An identity carries its kind, so a PSK identity can never pass for a
 * certificate name:
 *   cn:NAME    the commonName of a verified client certificate (the last
 *              one in its subject), compared exactly
 *   dns:NAME   a DNS subjectAltName of a verified client certificate,
 *              compared without regard to case
 *   cert:NAME  either of the two; a bare NAME means cert:NAME
 *   psk:NAME   a TLS PSK identity from the daemon's PSK file
 *   uid:N      a client of the NBD unix socket, by its user id
 *
 * A volume's access list, or when it has none its class's, holds allow and
 * deny entries.  A client matching a deny entry is refused; else one
 * matching an allow entry may open the volume; else a list with allow
 * entries refuses it; else (no list, or deny entries only) the default
 * policy decides: open (nbd-access-default = open) or closed. */
#ifndef CRYPTVOLD_ACCESS_H
#define CRYPTVOLD_ACCESS_H

#include <stddef.h>

#include "meta/meta.h"

struct cvd;

enum cvd_id_kind { CVD_ID_CN, CVD_ID_DNS, CVD_ID_CERT, CVD_ID_PSK,
                   CVD_ID_UID };
#define CVD_ID_NAME_MAX 255

struct cvd_identity {
    enum cvd_id_kind kind;
    char name[CVD_ID_NAME_MAX + 1];
};

/* "cn:x", "x" (cert:x), ...; -EINVAL with a message quoting s otherwise. */
int cvd_identity_parse(const char *s, struct cvd_identity *out);
/* The canonical text ("cert:x", "uid:0"); buf of CVD_IDENTITY_TEXT_MAX + 1
 * bytes always fits. */
void cvd_identity_format(const struct cvd_identity *id, char *buf,
                         size_t len);

/* What one client proved to be: any of these may match an entry. */
#define CVD_CLIENT_IDS_MAX 20
struct cvd_client_ids {
    int authenticated;          /* a verified certificate, a PSK, a uid */
    size_t n;
    struct cvd_identity id[CVD_CLIENT_IDS_MAX];
};
/* Adds one identity (ignored when full). */
void cvd_client_add(struct cvd_client_ids *c, enum cvd_id_kind kind,
                    const char *name);

struct cvd_access_entry {
    struct cvd_identity id;
    int allow;
};

enum cvd_access_verdict {
    CVD_ACCESS_ALLOWED,         /* by an allow entry or the open default */
    CVD_ACCESS_DENIED,          /* a deny entry matches */
    CVD_ACCESS_NOT_LISTED,      /* the list allows others only */
    CVD_ACCESS_CLOSED,          /* no allow entries, default closed */
};
enum cvd_access_verdict cvd_access_decide(const struct cvd_access_entry *l,
                                          size_t n,
                                          const struct cvd_client_ids *c,
                                          int default_open);
/* For the log and audit: "not on the access list of class gold". */
const char *cvd_access_verdict_name(enum cvd_access_verdict v);

/* The list that applies to a volume: its own, else its class's.  *from
 * says whose it is ("volume", "class"; "" when neither has one). */
int cvd_access_effective(struct cvd *d, const struct cvd_volume_rec *v,
                         struct cvd_access_entry **out, size_t *n,
                         const char **from);

/* May client c open volume name?  -ENOENT (message "volume NAME: no such
 * volume") when there is no such volume; otherwise 0 with *verdict, and
 * detail (for the audit log, never the client) saying whose list decided. */
int cvd_access_check(struct cvd *d, const char *name,
                     const struct cvd_client_ids *c,
                     enum cvd_access_verdict *verdict, char *detail,
                     size_t dlen);

/* Converts the store's records (parsing each identity). */
int cvd_access_from_recs(const struct cvd_access_rec *r, size_t n,
                         struct cvd_access_entry **out);

#endif
