/* The parts of daemon/migrate/ shared by its files. */
#ifndef CRYPTVOLD_MIGRATE_INTERNAL_H
#define CRYPTVOLD_MIGRATE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "meta/meta.h"

struct cvd;

/* As daemon/cluster/'s seal key: an AES-256-GCM key (lib/crypto/seal.h). */

struct migration {
    struct cvd *d;
    struct cvd_meta *src;           /* meta.db, sealed by the node key */
    struct cvd_meta *dst;           /* etcd; seal_key once founded */
    unsigned char *node_key;        /* locked */
    unsigned char *seal_key;        /* locked, the new cluster's */
    struct cvd_cluster_rec cluster; /* the node's, then as founded */
    uint32_t *gens;                 /* KEK generations sealed for the node */
    size_t ngens;
    size_t nvolumes, nsecrets, nclasses;
    int tty;                        /* progress on stderr */
};

/* migrate-copy.c: the KEK generations, classes, secrets, volumes and
 * access lists from src into dst, in that order (a volume needs its
 * secret and class; a record's access list needs the record). */
int migrate_copy(struct migration *mg);

#endif
