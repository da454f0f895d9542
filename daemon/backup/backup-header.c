/* A backup's LUKS header, rebuilt in memory from its header blocks, and
 * unlocked as the volume it was taken of would be: with a secret's value
 * (a keyslot), or with the cryptvol-kek token and this node's keyring.
 * Nothing here writes anything; the key only authenticates the manifest
 * (cvd_backup_mac_key) and proves the secret, before a restore writes a
 * block. */
#include "backup-internal.h"

#include "daemon.h"
#include "core/error.h"
#include "core/secmem.h"
#include "keys/keyring.h"
#include "luks/kek-token.h"
#include "luks/luks.h"
#include "meta/meta.h"
#include "store/backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cvd_backup_key_free(struct cvd_backup_key *k)
{
    cv_secmem_free(k->key, k->keylen);
    /* memset may be elided on a dying object; the MAC key is a secret */
    explicit_bzero(k, sizeof *k);
}

static const char *block_problem(int r)
{
    switch (r) {
    case -ENOENT: return "missing from the target";
    case -EBADMSG: return "checksum mismatch";
    case -EMSGSIZE: return "not the size its manifest lists";
    default: return NULL;
    }
}

int cvd_backup_block_get(struct cvd_target *t, const char *id,
                         const struct cvd_manifest_block *b, void *buf)
{
    int r = cvd_target_block_get(t, b->sha256, buf, b->len);
    const char *why = block_problem(r);

    if (why)
        return cv_error(r, "backup %s: block at offset %llu (sha256 %s): %s",
                        id, (unsigned long long)b->offset, b->sha256, why);
    if (r < 0)
        return cv_error_prefix(r, "backup %s: block at offset %llu (sha256 "
                               "%s)", id, (unsigned long long)b->offset,
                               b->sha256);
    return 0;
}

static int held(const struct cvd_manifest_block *b, unsigned i)
{
    return b->held[i / 8] >> (i % 8) & 1;
}

/* The held sectors of b that lie below end, copied from buf into hdr. */
static int header_put(struct cv_backend *hdr, const struct cvd_manifest_block *b,
                      const unsigned char *buf, uint64_t end)
{
    unsigned i, n = (b->len + CV_CHAIN_BLOCK - 1) / CV_CHAIN_BLOCK;
    int r = 0;

    for (i = 0; r == 0 && i < n; i++) {
        uint64_t off = b->offset + (uint64_t)i * CV_CHAIN_BLOCK;
        uint64_t len = CV_CHAIN_BLOCK;

        if (off >= end)
            break;
        if (len > end - off)
            len = end - off;
        if (len > b->len - (off - b->offset))
            len = b->len - (off - b->offset);
        if (held(b, i))
            r = cv_backend_pwrite(hdr, buf + (off - b->offset), len, off, 0);
    }
    return r;
}

int cvd_backup_header_read(struct cvd_target *t, const struct cvd_manifest *m,
                           struct cv_backend **out)
{
    const struct cvd_backup_info *info = &m->info;
    struct cv_backend *hdr = NULL;
    unsigned char *buf = NULL;
    char name[CVD_BACKUP_ID_MAX + 32];
    size_t i;
    int r;

    if (info->data_offset == 0 || info->data_offset > info->raw_size)
        return cv_error(-EBADMSG, "backup %s: its manifest has no header "
                        "(data offset %llu of %llu bytes)", info->id,
                        (unsigned long long)info->data_offset,
                        (unsigned long long)info->raw_size);
    snprintf(name, sizeof name, "backup %s header", info->id);
    r = cv_backend_mem_new(name, info->data_offset, &hdr);
    if (r == 0 && !(buf = malloc(CVD_BACKUP_BLOCK)))
        r = cv_error(-ENOMEM, "backup %s: no memory for a block", info->id);
    for (i = 0; r == 0 && i < m->nblocks; i++) {
        const struct cvd_manifest_block *b = &m->blocks[i];

        if (b->offset >= info->data_offset)
            break;
        r = cvd_backup_block_get(t, info->id, b, buf);
        if (r == 0)
            r = header_put(hdr, b, buf, info->data_offset);
    }
    free(buf);
    if (r < 0)
        cv_backend_close(hdr);
    else
        *out = hdr;
    return r;
}

/* The key the token wraps, or the keyslot passphrase it wraps opened:
 * the header's UUID (checked to be the manifest's) is the token's
 * associated data, so a header from another volume does not unwrap. */
static int kek_key(struct cvd *d, const struct cvd_backup_info *info,
                   struct cv_luks *l, struct cvd_backup_key *out)
{
    struct cv_kek_token t = { 0 };
    struct cv_secret pass = { 0 };
    const unsigned char *kek = NULL;
    int r = cv_kek_token_get(l, &t);

    if (r == -ENOENT)
        r = cv_error(-ENOENT, "backup %s: its header has no cryptvol-kek "
                     "token and the backup names no secret: give one with "
                     "--secret", info->id);
    else if (r == 0)
        r = cvd_keyring_get(d->keys, t.gen, &kek);
    if (r == 0 && t.wrapped_key) {
        r = cv_kek_token_unwrap_key(&t, kek, info->uuid, &out->key,
                                    &out->keylen);
        if (r == 0)
            r = cv_luks_verify_key(l, out->key, out->keylen);
    } else if (r == 0) {
        r = cv_kek_token_unwrap(&t, kek, info->uuid, &pass);
        if (r == 0)
            r = cv_luks_unlock_keyslot(l, t.keyslot, pass.data, pass.len,
                                       &out->key, &out->keylen);
    }
    if (r == -CV_EWRONGKEY)
        r = cv_error(r, "backup %s: cluster KEK generation %u does not "
                     "unwrap its token", info->id, t.gen);
    else if (r < 0 && t.gen)
        r = cv_error_prefix(r, "backup %s", info->id);
    if (r >= 0) {
        out->kek_gen = t.gen;
        r = 0;
    }
    cv_secret_free(&pass);
    cv_kek_token_free(&t);
    return r;
}

static int secret_key(struct cvd *d, const struct cvd_backup_info *info,
                      struct cv_luks *l, const char *secret,
                      struct cvd_backup_key *out)
{
    struct cv_secret pass = { 0 };
    int r;

    snprintf(out->secret, sizeof out->secret, "%s", secret);
    r = cvd_meta_secret_value(d->meta, secret, &pass);
    if (r == -ENOENT)
        r = cv_error(-ENOENT, "backup %s: secret \"%s\" does not exist",
                     info->id, secret);
    else if (r < 0)
        r = cv_error_prefix(r, "backup %s: secret \"%s\"", info->id, secret);
    if (r == 0)
        r = cv_luks_unlock(l, pass.data, pass.len, &out->key, &out->keylen);
    if (r == -CV_EWRONGKEY)
        r = cv_error(r, "backup %s: secret \"%s\" does not open its header",
                     info->id, secret);
    else if (r < 0)
        r = cv_error_prefix(r, "backup %s: secret \"%s\"", info->id, secret);
    cv_secret_free(&pass);
    return r < 0 ? r : 0;
}

/* secret NULL: the token for a KEK volume (as its attach would), falling
 * back to the backup's named secret if the token does not open here; the
 * named secret for the others. */
static int open_key(struct cvd *d, const struct cvd_backup_info *info,
                    struct cv_luks *l, const char *secret,
                    struct cvd_backup_key *out)
{
    int r;

    if (secret)
        return secret_key(d, info, l, secret, out);
    if (!info->kek_gen && info->secret[0])
        return secret_key(d, info, l, info->secret, out);
    r = kek_key(d, info, l, out);
    if (r < 0 && info->secret[0]) {
        cv_secmem_free(out->key, out->keylen);
        out->key = NULL;
        out->keylen = 0;
        out->kek_gen = 0;
        r = secret_key(d, info, l, info->secret, out);
    }
    return r;
}

int cvd_backup_header_key(struct cvd *d, const struct cvd_backup_info *info,
                          struct cv_backend *hdr, const char *secret,
                          struct cvd_backup_key *out)
{
    struct cv_luks *l = NULL;
    int r;

    memset(out, 0, sizeof *out);
    r = cv_luks_load(hdr, &l);
    if (r < 0)
        r = cv_error_prefix(r, "backup %s: its header", info->id);
    if (r == 0 && strcmp(cv_luks_uuid(l), info->uuid) != 0)
        r = cv_error(-EBADMSG, "backup %s: its header's UUID %s is not the "
                     "manifest's %s", info->id, cv_luks_uuid(l), info->uuid);
    if (r == 0)
        r = open_key(d, info, l, secret, out);
    if (r == 0)
        r = cv_luks_info(l, &out->info);
    if (r == 0)
        r = cvd_backup_mac_key(out->key, out->keylen, info->uuid,
                               out->mac_key);
    if (r < 0) {
        /* out->secret stays: a restore waits for a missing one by name */
        cv_secmem_free(out->key, out->keylen);
        out->key = NULL;
        out->keylen = 0;
        explicit_bzero(out->mac_key, sizeof out->mac_key);
    }
    cv_luks_free(l);
    return r;
}

int cvd_backup_unlock(struct cvd *d, struct cvd_target *t,
                      const struct cvd_manifest *m, const char *secret,
                      struct cvd_backup_key *out)
{
    struct cv_backend *hdr = NULL;
    int r;

    memset(out, 0, sizeof *out);
    r = cvd_backup_header_read(t, m, &hdr);
    if (r == 0)
        r = cvd_backup_header_key(d, &m->info, hdr, secret, out);
    cv_backend_close(hdr);
    return r;
}

int cvd_backup_same_header(const struct cvd_manifest *a,
                           const struct cvd_manifest *b)
{
    size_t i;

    if (a->info.data_offset != b->info.data_offset ||
        strcmp(a->info.uuid, b->info.uuid) != 0)
        return 0;
    for (i = 0; ; i++) {
        int ea = i >= a->nblocks || a->blocks[i].offset >= a->info.data_offset;
        int eb = i >= b->nblocks || b->blocks[i].offset >= b->info.data_offset;

        if (ea || eb)
            return ea && eb;
        if (a->blocks[i].offset != b->blocks[i].offset ||
            a->blocks[i].len != b->blocks[i].len ||
            strcmp(a->blocks[i].sha256, b->blocks[i].sha256) != 0 ||
            memcmp(a->blocks[i].held, b->blocks[i].held,
                   sizeof a->blocks[i].held) != 0)
            return 0;
    }
}
