/* Volumes and secrets as the admin API manages them: image files under
 * DATA-DIR/volumes, LUKS headers, and their records in the metadata store.
 * Also the two callbacks through which the export registry (export.h)
 * learns what it can serve.
 *
 * Every function returns 0 or a negative errno with a message naming the
 * volume or secret: -EINVAL bad input, -ENOENT no such thing, -EEXIST name
 * taken, -EBUSY in use or busy, others internal. */
#ifndef CRYPTVOLD_VOLUMES_H
#define CRYPTVOLD_VOLUMES_H

#include <stddef.h>
#include <stdint.h>

#include "export/export.h"
#include "luks/luks.h"
#include "meta/meta.h"

struct cvd;

struct cvd_volume_req {
    const char *name;
    uint64_t size;              /* effective bytes */
    const char *secret;         /* NULL: generate one named after the volume */
    /* The class whose type, cipher, secret and encryption the volume takes
     * (classes.h); then secret and plaintext must be unset, and
     * luks_version and aes_bits are ignored.  NULL: none. */
    const char *class_name;
    int luks_version;           /* 2 or 1; ignored for plaintext */
    unsigned aes_bits;          /* 256 or 128 */
    int plaintext;              /* no encryption (comparison only) */
    int have_pbkdf;             /* else d->cfg.pbkdf, or for a generated
                                   secret PBKDF2 at 1000 iterations */
    struct cv_pbkdf pbkdf;
    /* Replication (docs/replication.md): replicas, 0 for the class's or 1;
     * 2 or more need a cluster with as many Online nodes.  min_replicas:
     * the in-sync replicas a write needs, 0 for replicas - 1. */
    unsigned replicas;
    unsigned min_replicas;
};

/* Makes the image file, formats it, and records it, all or nothing.
 * When the volume's secret (named, or from its class) does not exist yet,
 * records the volume in state pending instead, with no file: *out then
 * says so (out->state, out->wait_secret), and it is made once the secret
 * appears (cvd_volumes_retry_pending). */
int cvd_volume_create(struct cvd *d, const struct cvd_volume_req *req,
                      struct cvd_volume_rec *out);
/* Makes the pending volume v if its secret now exists: pending, then
 * creating (with wait_secret kept, so that recovery puts it back to
 * pending), then ready; v is updated.  -ENOENT (no message worth showing)
 * while the secret is still missing, -EBUSY if another thread is at it. */
int cvd_volume_finish_pending(struct cvd *d, struct cvd_volume_rec *v);
/* Tries every pending volume that waits for secret (NULL: any secret);
 * failures are logged, not returned: the volume stays pending and is tried
 * again.  Returns how many were made, or a negative errno if the volumes
 * could not be listed. */
int cvd_volumes_retry_pending(struct cvd *d, const char *secret);

/* The background retry of pending volumes every interval seconds, for
 * secrets that appear without cvd_secret_create on this node (another
 * node writing a shared store).  interval 0: no thread (*out NULL). */
struct cvd_pending;
int cvd_pending_start(struct cvd *d, unsigned interval,
                      struct cvd_pending **out);
/* Stops and frees; NULL is ignored. */
void cvd_pending_stop(struct cvd_pending *p);

/* Moves an encrypted volume to the secret called secret, online (also while
 * served: the header is changed, no data is rewritten): a keyslot for the
 * new secret is added and checked, then the old secret's keyslot removed.
 * -EINVAL plaintext, -EBUSY pending or busy, -ENOENT no such secret,
 * -CV_EWRONGKEY when the current secret opens no keyslot (nothing is
 * written then).  A generated secret no volume uses afterwards is deleted. */
int cvd_volume_rekey(struct cvd *d, const char *name, const char *secret,
                     struct cvd_volume_rec *out);
/* For recovery: finishes or undoes the rekey of a volume left in state
 * rekeying. */
int cvd_volume_rekey_recover(struct cvd *d, struct cvd_volume_rec *v);
/* Sets the effective size (volumes-resize.c).  A grow works while the
 * volume is served: connected clients keep the size they negotiated, new
 * ones get the new size; it is durable when this returns.  A shrink only
 * with allow_shrink, and -EBUSY (naming the clients) while served. */
int cvd_volume_resize(struct cvd *d, const char *name, uint64_t size,
                      int allow_shrink, struct cvd_volume_rec *out);
/* How many clients connected to volume name negotiated less than size
 * (after a grow: those that keep the old size until they reconnect). */
int cvd_volume_clients_older(struct cvd *d, const char *name,
                             uint64_t size);
/* Removes the file, the record and the secret generated for the volume,
 * and a replicated volume's replicas (cvd_repl_delete).  -EBUSY while the
 * volume is served. */
int cvd_volume_delete(struct cvd *d, const char *name);
int cvd_volume_get(struct cvd *d, const char *name, struct cvd_volume_rec *out);
/* What NBD_OPT_INFO tells a client, from the record and the LUKS header
 * only: nothing is unlocked, no secret is read.  The size is the one an
 * open would serve (whole sectors after the data offset). */
struct cvd_volume_desc {
    uint64_t size;
    unsigned block_size;
    int plaintext;
    int readonly;               /* a snapshot, "VOL@SNAP" */
};
int cvd_volume_describe(struct cvd *d, const char *name,
                        struct cvd_volume_desc *out);
/* 1 while an NBD connection holds the volume open, or one of its
 * snapshots. */
int cvd_volume_in_use(struct cvd *d, const char *name);

/* Finishes or undoes what a daemon that died left half done (volumes still
 * "creating", "resizing", "deleting" or "rekeying"; a volume that was
 * being made from pending goes back to pending).  Called before serving
 * requests. */
int cvd_volumes_recover(struct cvd *d);

/* Then makes the pending volumes that waited for it. */
int cvd_secret_create(struct cvd *d, const char *name, const void *value,
                      size_t len);
/* -EBUSY while a volume uses it, waits for it or is moving to it. */
int cvd_secret_delete(struct cvd *d, const char *name);
/* Replaces the value of an existing secret (-ENOENT if none).  No volume
 * is touched: a volume whose keyslot the new value does not open fails its
 * next attach with "wrong key" (one already attached stays open). */
int cvd_secret_update(struct cvd *d, const char *name, const void *value,
                      size_t len);

/* After an update of secret name: whether value opens the volumes whose
 * keyslot holds it (Available or Rekeying, with their secret named name).
 * cb gets each volume checked and 1 if value opens it, 0 if not.  Each
 * check is a key derivation: at most max are made; returns how many
 * volumes were left unchecked (also those whose header could not be
 * read), or a negative errno if the volumes could not be listed. */
#define CVD_SECRET_CHECK_MAX 16
int cvd_secret_check_volumes(struct cvd *d, const char *name,
                             const void *value, size_t len, unsigned max,
                             void (*cb)(void *arg, const char *volume,
                                        int opens),
                             void *arg);

/* export.h's cvd_resolve_fn, cvd_unlock_fn (volumes-unlock.c) and
 * cvd_list_fn; opaque is the struct cvd. */
int cvd_volumes_resolve(void *opaque, const char *name, int serving,
                        struct cvd_volume_spec *spec);
int cvd_volumes_unlock(void *opaque, const char *name, struct cv_chain *c,
                       struct cvd_volume_keys *out);
int cvd_volumes_list(void *opaque, int (*cb)(void *arg, const char *name),
                     void *arg);

#endif
