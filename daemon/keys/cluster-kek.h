/* Cluster-level encryption: enabling it, the KEK generations, rotation.
 *
 * With encryption Enabled every volume gets a keyslot opened by a random
 * passphrase that a cryptvol-kek LUKS2 token holds wrapped by the current
 * KEK generation (lib/luks/kek-token.h), so attaching needs no user secret.
 *
 * A rotation moves through states kept in the metadata store, so that a
 * daemon killed at any point resumes it at start:
 *   NoRotation -> DistributingKEK: the new generation is stored, sealed
 *     for each node (one transaction with the state change);
 *   DistributingKEK -> EncryptingDEKs: every node has it; new volumes use
 *     it from now on;
 *   EncryptingDEKs: each volume's token is re-wrapped (the token in the
 *     LUKS header is the truth; the record's kek_gen follows it);
 *   -> NoRotation, and generations no volume needs are forgotten.
 * No data and no keyslot is re-encrypted. */
#ifndef CRYPTVOLD_CLUSTER_H
#define CRYPTVOLD_CLUSTER_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "meta/meta.h"

struct cvd;
struct cvd_cluster;

int cvd_cluster_new(struct cvd *d, struct cvd_cluster **out);
/* Finishes an Enabling left by a dead daemon and resumes a rotation in the
 * background.  Called before serving. */
int cvd_cluster_resume(struct cvd_cluster *c);
/* Stops a running rotation (it resumes at the next start) and frees. */
void cvd_cluster_free(struct cvd_cluster *c);

/* protection: "tpm" or "software".  -EBUSY (with the reason) when the
 * cluster has volumes or is already enabled. */
int cvd_cluster_enable(struct cvd_cluster *c, const char *actor,
                       const char *protection);
/* Always refused, saying why. */
int cvd_cluster_disable(struct cvd_cluster *c, const char *actor);
/* Starts a rotation to a new generation; *gen gets its number. */
int cvd_cluster_rotate(struct cvd_cluster *c, const char *actor,
                       uint32_t *gen);
/* encryptionState, kekProtection, currentKekGeneration,
 * previousKekGenerations, rotationState and the rotation's progress. */
int cvd_cluster_info(struct cvd_cluster *c, json_object **out);
/* An escrow document of every generation this node holds, sealed under
 * the recovery passphrase (lib/luks/escrow.h).  *text malloc'ed. */
int cvd_cluster_escrow(struct cvd_cluster *c, const char *actor,
                       const char *pass, size_t passlen, char **text);

/* What the metrics show (metrics/): the cluster record and the progress
 * of the last or running rotation.  c may be NULL (no cluster started):
 * the record alone, from m. */
struct cvd_cluster_progress {
    struct cvd_cluster_rec rec;
    uint32_t done, total, failed;
};
int cvd_cluster_progress(struct cvd_cluster *c, struct cvd_meta *m,
                         struct cvd_cluster_progress *out);

/* For volume create: the generation new tokens get and its KEK, or
 * *gen = 0 when encryption is Disabled; -EBUSY while Enabling. */
int cvd_cluster_current_kek(struct cvd_cluster *c, uint32_t *gen,
                            const unsigned char **kek);

#endif
