/* Volume classes (Longhorn's StorageClass parameters): how the volumes of
 * a class are encrypted and which secret unlocks each.
 *
 * A class names one secret for all its volumes (global), or a template
 * such as "${volume.name}-key" that gives each volume its own, or neither:
 * then an encrypted class generates a secret per volume, as volume create
 * without a secret does, and a class that is not encrypted makes plaintext
 * volumes (unless cluster encryption is on: see class_makes_plaintext in
 * classes.c).  The secret need not exist yet: a volume whose secret is
 * missing waits in state pending (volumes.h). */
#ifndef CRYPTVOLD_CLASSES_H
#define CRYPTVOLD_CLASSES_H

#include <stddef.h>

#include "meta/meta.h"

struct cvd;
struct cvd_volume_req;

/* Checks c: its name, type (luks2, luks1), aes_bits (256, 128), replicas
 * (at least 1), secret and secret_template not both, the secret a valid
 * name, the template's characters and placeholders.  Sets c->encrypted
 * when a secret or template is given.  -EINVAL with a message naming the
 * class and the field. */
int cvd_class_check(struct cvd_class_rec *c);

/* The secret name tmpl makes for volume in class cls: ${volume.name} and
 * ${class.name} replaced.  -EINVAL for an unknown placeholder or a result
 * that is not a valid secret name (too long, bad first character). */
int cvd_class_expand(const char *tmpl, const char *cls, const char *volume,
                     char out[CVD_NAME_MAX + 1]);

/* AES bits from a cipher: "aes-256" or "aes-128" as volume create takes
 * it, or cryptsetup's "aes-xts-plain64" with key_bits 512 (AES-256, also
 * when key_bits is 0) or 256 (AES-128).  what names the object for the
 * message ("class gold"). */
int cvd_parse_cipher(const char *what, const char *cipher, unsigned key_bits,
                     unsigned *aes_bits);

int cvd_class_create(struct cvd *d, const struct cvd_class_rec *c,
                     struct cvd_class_rec *out);
int cvd_class_get(struct cvd *d, const char *name, struct cvd_class_rec *out);
/* -EBUSY while a volume uses it. */
int cvd_class_delete(struct cvd *d, const char *name);

/* For volume create with req->class_name: *out is req with the class's
 * type, cipher, secret (a template expanded into secret) and plaintext
 * setting.  -EINVAL if req also names a secret or asks for plaintext, or
 * the class wants more replicas than the cluster has nodes; -ENOENT if
 * there is no such class. */
int cvd_class_volume_req(struct cvd *d, const struct cvd_volume_req *req,
                         struct cvd_volume_req *out,
                         char secret[CVD_NAME_MAX + 1]);

#endif
