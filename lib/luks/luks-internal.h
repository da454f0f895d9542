/* What lib/luks/luks.c (headers), luks-keyslots.c (keyslots) and
 * luks-token.c (tokens) share.  Not for other modules: they go through luks.h. */
#ifndef CRYPTVOL_LUKS_INTERNAL_H
#define CRYPTVOL_LUKS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

struct cv_backend;
struct crypt_device;
struct cv_pbkdf;

#define LUKS_MAX_AREAS 32

struct luks_area {
    uint64_t off, len;
};

struct cv_luks {
    struct cv_backend *b;
    struct crypt_device *cd;
    int memfd;
    /* Only the LUKS2 header copies were mirrored (cv_luks_load_metadata):
     * the memfd's keyslot areas are zeros, so no keyslot may be read,
     * and no full write-back done, through this handle. */
    int metadata_only;
    /* Only the header copies and the keyslot areas in loaded[] were
     * mirrored (cv_luks_load of a LUKS2 header): a commit writes back
     * those areas and the ones the change made, nothing else. */
    int partial;
    /* Made by a format of a new store (cv_format_params.new_store): the
     * caller flushes; until the first commit the store is all zeros. */
    int deferred_flush;
    int store_zero;
    struct luks_area loaded[LUKS_MAX_AREAS];
    size_t nloaded;
    uint64_t raw_size;
    double keyslot_seconds;     /* the last keyslot made through l */
    char log[256];          /* libcryptsetup's last error message */
};

/* libcryptsetup's last error for l, else strerror(-r). */
const char *luks_cs_msg(struct cv_luks *l, int r);

/* Writes the blocks of [from, to) that differ between memfd and store. */
int luks_write_back(struct cv_luks *l, uint64_t from, uint64_t to);

/* Stores the header after a keyslot change: keyslot material first and
 * durable, then the header(s) that refer to it. */
int luks_commit(struct cv_luks *l);

/* -EINVAL, saying so, through a handle whose keyslot areas were not
 * loaded (cv_luks_load_metadata); what names the refused act. */
int luks_need_keyslots(struct cv_luks *l, const char *what);

/* Sets the key derivation of the next keyslot made through l (type: the
 * LUKS type, for its defaults); p NULL or all zero keeps them. */
int luks_set_pbkdf(struct cv_luks *l, const char *type,
                   const struct cv_pbkdf *p);

/* CLOCK_MONOTONIC, in seconds. */
double luks_now(void);

/* Makes what was written through l durable, unless the caller defers
 * that (cv_format_params.new_store). */
int luks_flush(struct cv_luks *l);

/* The keyslot areas the LUKS2 JSON metadata of l lists. */
int luks_keyslot_areas(struct cv_luks *l, struct luks_area *a, size_t max,
                       size_t *n);

/* 1 for a LUKS2 handle, 0 for LUKS1. */
int luks_is_luks2(struct cv_luks *l);

#endif
