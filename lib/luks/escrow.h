/* KEK escrow: every cluster KEK generation sealed under a key derived from
 * a recovery passphrase, so that a raw volume image can be opened offline
 * when the cluster (its TPMs, its node keys) is gone.
 *
 * The escrow is a JSON document:
 *   {"format": "cryptvol-kek-escrow", "version": 1, "cluster": "<uuid>",
 *    "created": "<RFC 3339>",
 *    "kdf": {"type": "argon2id", "time": T, "memory_kib": M,
 *            "parallel": P, "salt": "<base64>"},
 *    "generations": [{"generation": 1, "sealed": "<base64>"}, ...]}
 * Each "sealed" is lib/crypto/seal.h's blob of the 32-byte KEK under the derived
 * key, with "kek-generation-N" as associated data.  The KDF is argon2id
 * from libargon2, the reference implementation libcryptsetup links
 * (libcryptsetup does not export its crypt_pbkdf_perform), not ours.
 * Opening bounds what a document may ask: time 1 to 100, memory up to
 * 4 GiB, parallelism 1 to 16, 1 to 65536 generations. */
#ifndef CRYPTVOL_ESCROW_H
#define CRYPTVOL_ESCROW_H

#include <stddef.h>
#include <stdint.h>

struct cv_kek_gen {
    uint32_t gen;
    unsigned char *kek;         /* CV_KEK_LEN bytes of locked memory */
};

/* Argon2id cost for new escrows; zero fields take the defaults (4
 * iterations, 256 MiB, 2 threads).  Tests pass a small cost. */
struct cv_escrow_cost {
    uint32_t time;
    uint32_t memory_kib;
    uint32_t parallel;
};

/* A recovery passphrase is at least this many bytes: an escrow is a copy
 * of every KEK that anyone holding it may attack offline.  The daemon and
 * the CLI refuse shorter ones. */
#define CV_ESCROW_PASS_MIN 12

/* Makes an escrow document (*text malloc'ed, NUL-terminated; it holds no
 * clear key).  pass is the recovery passphrase. */
int cv_escrow_make(const struct cv_kek_gen *gens, size_t n,
                   const char *cluster_id, const char *pass, size_t passlen,
                   const struct cv_escrow_cost *cost, char **text);

/* Opens an escrow document: *gens is a malloc'ed array of n generations,
 * in the document's order.  A wrong recovery passphrase (or changed KDF
 * parameters: no generation opens) is CV_EWRONGKEY (negated); a document
 * that is not an escrow, of another version, with absurd KDF parameters,
 * or with one generation that does not open while others do (changed) is
 * -EINVAL; all with a message starting "KEK escrow: ". */
int cv_escrow_open(const char *text, size_t len, const char *pass,
                   size_t passlen, struct cv_kek_gen **gens, size_t *n);

/* Wipes and frees what cv_escrow_open returned; NULL is ignored. */
void cv_kek_gens_free(struct cv_kek_gen *gens, size_t n);

#endif
