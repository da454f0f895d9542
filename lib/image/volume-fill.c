/* Merge and flatten: filling one of the chain's own layers with what shows
 * through it from below (volume.h, cv_volume_fill_layer).  No view
 * changes, so it runs while the volume is served; the range lock orders
 * it against writes of the same blocks, a piece at a time. */
#include "volume.h"
#include "volume-internal.h"
#include "store/chain.h"
#include "core/error.h"
#include "core/rangelock.h"
#include "crypto/xts.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct fill {
    struct cv_volume *v;
    unsigned target;
    int target_format;
    const unsigned *from;
    size_t nfrom;
    char *buf;                  /* VOL_PIECE bytes */
    uint64_t copied;
};

/* Whether blocks of layer id are to be copied. */
static int wanted(const struct fill *f, int layer)
{
    size_t i;

    if (layer == CV_CHAIN_HOLE)
        return 0;
    if (f->nfrom == 0)
        return 1;
    for (i = 0; i < f->nfrom; i++)
        if (f->from[i] == (unsigned)layer)
            return 1;
    return 0;
}

struct recrypt {
    struct fill *f;
    uint64_t off;               /* volume offset of f->buf[0] */
};

/* A run of target's format is copied as it is; any other is decrypted
 * with its key and encrypted with target's (a hole, which the lookup did
 * not see, becomes encrypted zeros: what target showed, it then holds). */
static int recrypt_run(void *arg, size_t buf_off, size_t len, int format)
{
    struct recrypt *rc = arg;
    struct fill *f = rc->f;
    struct cv_volume *v = f->v;
    char *p = f->buf + buf_off;
    uint64_t iv = (rc->off + buf_off) / 512;
    int r = 0;

    if (format == f->target_format)
        return 0;
    if (format != CV_CHAIN_HOLE &&
        (format < 0 || (unsigned)format >= v->nformats))
        return cv_error(-EIO, "%s: a layer of format %d at offset %llu, but "
                        "the volume has %u keys", vol_name(v), format,
                        (unsigned long long)(rc->off + buf_off), v->nformats);
    if (format != CV_CHAIN_HOLE)
        r = cv_xts_decrypt(v->xts[format], p, p, len, iv);
    if (r == 0)
        r = cv_xts_encrypt(v->xts[f->target_format], p, p, len, iv);
    return r < 0 ? cv_error_prefix(r, "%s", vol_name(v)) : 0;
}

/* Copies the blocks of [off, off+len) that target lacks and a wanted
 * layer shows through it. */
static int fill_lacking(struct fill *f, uint64_t off, uint64_t len)
{
    struct cv_volume *v = f->v;
    struct recrypt rc = { .f = f };
    uint64_t end = off + len, run = 0;
    int layer = 0, format = 0, r = 0;

    while (r == 0 && off < end) {
        r = vol_lookup(v, off, end - off, f->target, &run, &layer, &format);
        if (r < 0 || !wanted(f, layer)) {
            off += run;
            continue;
        }
        rc.off = off;
        r = cv_chain_read(v->c, f->buf, run, vol_raw(v, off), f->target,
                          recrypt_run, &rc);
        if (r == 0)
            r = cv_chain_write_layer(v->c, f->target, f->buf, run,
                                     vol_raw(v, off));
        f->copied += run;
        off += run;
    }
    return r;
}

/* One piece, under the range lock: no write of the volume can change
 * what target lacks or what shows through it meanwhile. */
static int fill_piece(struct fill *f, uint64_t off, uint64_t len)
{
    struct cv_volume *v = f->v;
    struct cv_range range;
    uint64_t end = off + len, run = 0;
    int r = 0, has;

    cv_range_lock(&v->locks, &range, off, end);
    while (r == 0 && off < end) {
        has = cv_chain_layer_has(v->c, f->target, vol_raw(v, off),
                                 end - off, &run);
        if (has < 0)
            r = has;
        else if (run == 0 || run > end - off)
            r = cv_error(-EIO, "%s: layer %u: the chain answered for %llu "
                         "bytes of %llu", vol_name(v), f->target,
                         (unsigned long long)run,
                         (unsigned long long)(end - off));
        else if (!has)
            r = fill_lacking(f, off, run);
        off += run;
    }
    cv_range_unlock(&v->locks, &range);
    return r;
}

/* The index of layer id in l, as the chain resolves an id: its own layers
 * first (a parent's may have the same number, in its own directory). */
static size_t layer_index(const struct cv_chain_layer_info *l, size_t n,
                          unsigned id)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (l[i].own && l[i].id == id)
            return i;
    for (i = 0; i < n; i++)
        if (l[i].id == id)
            return i;
    return n;
}

/* target must be an own layer of the chain, and every layer of from one
 * below it. */
static int check_layers(struct fill *f)
{
    struct cv_volume *v = f->v;
    struct cv_chain_layer_info *l = NULL;
    size_t n = 0, j, t;
    int r = cv_chain_layers(v->c, &l, &n);

    if (r < 0)
        return r;
    t = layer_index(l, n, f->target);
    if (t == n || !l[t].own) {
        r = cv_error(-EINVAL, "%s: layer %u is not one of the chain's own",
                     vol_name(v), f->target);
        goto out;
    }
    f->target_format = l[t].format;
    for (j = 0; j < f->nfrom; j++) {
        if (layer_index(l, n, f->from[j]) >= t) {
            r = cv_error(-EINVAL, "%s: layer %u is not below layer %u",
                         vol_name(v), f->from[j], f->target);
            goto out;
        }
    }
    if (f->target_format < 0 || (unsigned)f->target_format >= v->nformats)
        r = cv_error(-EIO, "%s: layer %u is of format %d, but the volume has "
                     "%u keys", vol_name(v), f->target, f->target_format,
                     v->nformats);
out:
    free(l);
    return r;
}

static int check_fill_range(struct cv_volume *v, uint64_t off, uint64_t len)
{
    uint64_t size = cv_volume_size(v);
    int r = vol_check_range(v, "fill", len, off);

    if (r == 0 && (off % CV_CHAIN_BLOCK ||
                   (len % CV_CHAIN_BLOCK && off + len != size)))
        r = cv_error(-EINVAL, "%s: fill of %llu bytes at offset %llu: not "
                     "whole %u-byte blocks", vol_name(v),
                     (unsigned long long)len, (unsigned long long)off,
                     CV_CHAIN_BLOCK);
    return r;
}

int cv_volume_fill_layer(struct cv_volume *v, unsigned target,
                         const unsigned *from, size_t nfrom, uint64_t off,
                         uint64_t len, cv_volume_progress_fn progress,
                         void *arg)
{
    struct fill f = { .v = v, .target = target, .from = from,
                      .nfrom = nfrom };
    uint64_t end = off + len;
    int r = vol_check_writable(v);

    if (r == 0)
        r = check_fill_range(v, off, len);
    if (r == 0)
        r = check_layers(&f);
    if (r == 0 && !(f.buf = malloc(VOL_PIECE)))
        r = cv_error(-ENOMEM, "%s: out of memory", vol_name(v));
    while (r == 0 && off < end) {
        uint64_t n = end - off < VOL_PIECE ? end - off : VOL_PIECE;
        r = fill_piece(&f, off, n);
        if (r == 0 && progress)
            r = progress(arg, f.copied);
        off += n;
    }
    free(f.buf);
    return r;
}
