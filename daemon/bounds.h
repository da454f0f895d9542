/* Bounds against clients that want to hurt: how many key derivations run
 * at once, how many connections and how long a handshake may take, how
 * much memory requests may pin, how many refused attempts the audit log
 * records in full.  Config keys and flags like the others (config.c lists
 * them; docs/cryptvold.md says what each bounds and why its default). */
#ifndef CRYPTVOLD_BOUNDS_H
#define CRYPTVOLD_BOUNDS_H

#include <stdint.h>

struct cvd_bounds {
    unsigned max_unlocks;           /* key derivations at once, daemon-wide */
    unsigned unlock_retry_delay;    /* s after a failed unlock; 0: none */
    unsigned nbd_max_conns;         /* 0: from RLIMIT_NOFILE */
    unsigned nbd_max_conns_host;    /* per peer address; 0: no limit */
    unsigned nbd_handshake_timeout; /* s for the whole handshake */
    unsigned nbd_idle_timeout;      /* s without requests; 0: none */
    uint64_t nbd_buffer_limit;      /* request bytes per connection */
    uint64_t nbd_buffer_total;      /* ... and for all of them */
    unsigned audit_refused_burst;   /* refusals per minute in full */
};

void cvd_bounds_defaults(struct cvd_bounds *b);
/* Sets key if it is one of these: 0, or a negative errno with a message;
 * 1 if key is not a bound (nothing said). */
int cvd_bounds_set(struct cvd_bounds *b, const char *key, const char *val);
/* Checks the bounds against each other. */
int cvd_bounds_check(const struct cvd_bounds *b);

#endif
