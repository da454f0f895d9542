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

#include "export.h"
#include "luks.h"
#include "meta.h"

struct cvd;

struct cvd_volume_req {
    const char *name;
    uint64_t size;              /* effective bytes */
    const char *secret;         /* NULL: generate one named after the volume */
    int luks_version;           /* 2 or 1; ignored for plaintext */
    unsigned aes_bits;          /* 256 or 128 */
    int plaintext;              /* no encryption (comparison only) */
    int have_pbkdf;             /* else d->cfg.pbkdf, or for a generated
                                   secret PBKDF2 at 1000 iterations */
    struct cv_pbkdf pbkdf;
};

/* Makes the image file, formats it, and records it, all or nothing. */
int cvd_volume_create(struct cvd *d, const struct cvd_volume_req *req,
                      struct cvd_volume_rec *out);
/* Sets the effective size; shrinking only with allow_shrink.  -EBUSY while
 * the volume is served. */
int cvd_volume_resize(struct cvd *d, const char *name, uint64_t size,
                      int allow_shrink, struct cvd_volume_rec *out);
/* Removes the file, the record and the secret generated for the volume.
 * -EBUSY while the volume is served. */
int cvd_volume_delete(struct cvd *d, const char *name);
int cvd_volume_get(struct cvd *d, const char *name, struct cvd_volume_rec *out);
/* 1 while an NBD connection holds the volume open. */
int cvd_volume_in_use(struct cvd *d, const char *name);

/* Finishes or undoes what a daemon that died left half done (volumes still
 * "creating", "resizing" or "deleting").  Called before serving requests. */
int cvd_volumes_recover(struct cvd *d);

int cvd_secret_create(struct cvd *d, const char *name, const void *value,
                      size_t len);
/* -EBUSY while a volume uses it. */
int cvd_secret_delete(struct cvd *d, const char *name);
/* Replaces the value of an existing secret (-ENOENT if none).  No volume
 * is touched: a volume whose keyslot the new value does not open fails its
 * next attach with "wrong key" (one already attached stays open). */
int cvd_secret_update(struct cvd *d, const char *name, const void *value,
                      size_t len);

/* export.h's cvd_resolve_fn and cvd_list_fn; opaque is the struct cvd. */
int cvd_volumes_resolve(void *opaque, const char *name,
                        struct cvd_volume_spec *spec);
int cvd_volumes_list(void *opaque, int (*cb)(void *arg, const char *name),
                     void *arg);

#endif
