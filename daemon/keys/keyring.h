/* The cluster KEKs this node can use, by generation.
 *
 * A KEK is stored only sealed, once per node (struct cvd_kek_rec): by the
 * node's TPM 2.0 ("tpm") or by its node key file ("software").  The
 * keyring unseals a generation the first time it is needed and keeps it
 * in locked memory until the daemon stops, so an attach costs one AES-GCM
 * unwrap, not a TPM round trip. */
#ifndef CRYPTVOLD_KEYRING_H
#define CRYPTVOLD_KEYRING_H

#include <stddef.h>
#include <stdint.h>

#include "core/secret-file.h"

struct cvd;
struct cvd_keyring;
struct cvd_kek_rec;

#define CVD_KEK_SOFTWARE "software"
#define CVD_KEK_TPM      "tpm"

int cvd_keyring_new(struct cvd *d, struct cvd_keyring **out);
/* Wipes every KEK.  NULL is ignored. */
void cvd_keyring_free(struct cvd_keyring *k);

/* The KEK of generation gen: CV_KEK_LEN bytes, valid until the keyring is
 * freed.  Errors name the generation and what stopped the unseal ("TPM
 * ... is not reachable", "no sealed copy for node n1"). */
int cvd_keyring_get(struct cvd_keyring *k, uint32_t gen,
                    const unsigned char **kek);

/* Makes a new random KEK for generation gen and seals it for this node
 * with protection into *rec (rec->sealed malloc'ed).  The keyring learns
 * it only once it is stored: cvd_keyring_get unseals it then. */
int cvd_keyring_make(struct cvd_keyring *k, uint32_t gen,
                     const char *protection, struct cvd_kek_rec *rec);

/* A cluster on etcd: "software" protection seals with the node key
 * (DATA-DIR/node.key, locked memory the caller keeps), not with the
 * store's seal key, which there is the cluster's and is itself sealed
 * by this.  Unset: the store's seal key (a single node: the node key). */
void cvd_keyring_set_node_key(struct cvd_keyring *k,
                              const unsigned char *node_key);
/* Seals key (CV_KEK_LEN bytes: a KEK of generation gen, or the cluster's
 * seal key for gen 0) for this node with protection into *rec
 * (rec->sealed malloc'ed): what a joining node stores of the keys it
 * received.  cvd_keyring_unseal: the other way, for any record of this
 * node (the seal key at start). */
int cvd_keyring_seal(struct cvd_keyring *k, uint32_t gen,
                     const char *protection, const unsigned char *key,
                     struct cvd_kek_rec *rec);
int cvd_keyring_unseal(struct cvd_keyring *k, const struct cvd_kek_rec *rec,
                       struct cv_secret *out);

/* Seals kek for this node (cvd_keyring_seal), stores the copy (kek_put)
 * and keeps it: a generation received from a peer. */
int cvd_keyring_adopt(struct cvd_keyring *k, uint32_t gen,
                      const char *protection, const unsigned char *kek);

/* A cluster: cvd_keyring_get of a generation this node has no stored copy
 * of asks fn(arg, gen) to get one (from a peer) and store it, then tries
 * again.  fn is called without the keyring's lock. */
typedef int (*cvd_keyring_fetch_fn)(void *arg, uint32_t gen);
void cvd_keyring_set_fetch(struct cvd_keyring *k, cvd_keyring_fetch_fn fn,
                           void *arg);

/* Every generation this node has stored, unsealed: for an escrow.  *gens
 * is freed with cv_kek_gens_free (lib/luks/escrow.h). */
struct cv_kek_gen;
int cvd_keyring_all(struct cvd_keyring *k, struct cv_kek_gen **gens,
                    size_t *n);

#endif
