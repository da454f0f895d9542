/* Manifests on the target: backups/ID.json, its MAC backups/ID.mac and the
 * per-volume index volumes/VOLUME/ID; the MAC key; backup state names.
 *
 * The MAC is HMAC-SHA256 over the exact bytes of ID.json with a key only
 * the volume key gives (HKDF), so a manifest edited, cut short, swapped
 * with another's or made for another volume is refused by whoever can
 * open the backup's header, before a byte of it is trusted. */
#include "target-internal.h"

#include "core/error.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A manifest lists at most a few million blocks (~150 bytes each). */
#define MANIFEST_MAX (1024u * 1024u * 1024u)
#define MAC_SALT "cryptvol-backup-mac-v1"

static const char *const state_names[] = {
    [CVD_BACKUP_IN_PROGRESS] = "InProgress",
    [CVD_BACKUP_COMPLETED] = "Completed",
    [CVD_BACKUP_FAILED] = "Failed",
};

const char *cvd_backup_state_name(enum cvd_backup_state s)
{
    return (unsigned)s < sizeof state_names / sizeof state_names[0] ?
           state_names[s] : "?";
}

int cvd_backup_state_parse(const char *name, enum cvd_backup_state *out)
{
    size_t i;

    for (i = 0; i < sizeof state_names / sizeof state_names[0]; i++)
        if (!strcmp(name, state_names[i])) {
            *out = (enum cvd_backup_state)i;
            return 0;
        }
    return cv_error(-EINVAL, "backup state \"%s\": not InProgress, Completed "
                    "or Failed", name);
}

void cvd_manifest_free(struct cvd_manifest *m)
{
    free(m->blocks);
    m->blocks = NULL;
    m->nblocks = 0;
}

int cvd_backup_mac_key(const void *volume_key, size_t len, const char *uuid,
                       unsigned char out[CVD_BACKUP_MAC_KEY])
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                          (void *)volume_key, len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, MAC_SALT,
                                          strlen(MAC_SALT)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)uuid,
                                          strlen(uuid)),
        OSSL_PARAM_construct_end(),
    };
    int r = 0;

    if (!ctx || EVP_KDF_derive(ctx, out, CVD_BACKUP_MAC_KEY, params) != 1)
        r = cv_error(-EIO, "volume %s: HKDF of the backup MAC key failed",
                     uuid);
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return r;
}

/* HMAC-SHA256 of text with key, as 64 hex digits. */
static int mac_hex(const char *id, const unsigned char *key, const char *text,
                   size_t len, char hex[65])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    unsigned char md[32];
    size_t n = 0, i;
    int r = 0;

    if (!ctx || EVP_MAC_init(ctx, key, CVD_BACKUP_MAC_KEY, params) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)text, len) != 1 ||
        EVP_MAC_final(ctx, md, &n, sizeof md) != 1 || n != sizeof md)
        r = cv_error(-EIO, "backup %s: HMAC-SHA256 of its manifest failed",
                     id);
    for (i = 0; r == 0 && i < sizeof md; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    OPENSSL_cleanse(md, sizeof md);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return r;
}

/* A volume name as a directory name of the index. */
static int volume_ok(const char *v)
{
    return v[0] && v[0] != '.' && !strchr(v, '/');
}

/* volumes/VOLUME/ID, an empty file: made before the manifest is filled so
 * that every manifest is in its volume's index. */
static int write_index(struct cvd_target *t, const struct cvd_backup_info *i)
{
    char dir[PATH_MAX], path[PATH_MAX], what[160];
    int r, fd;

    snprintf(what, sizeof what, "index of volume %s", i->volume);
    r = cvd_target_path(t, dir, sizeof dir, "volumes/%s", i->volume);
    if (r == 0)
        r = cvd_target_path(t, path, sizeof path, "volumes/%s/%s", i->volume,
                            i->id);
    if (r == 0)
        r = cvd_target_mkdir(t, dir, what);
    if (r < 0)
        return r;
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return cvd_target_fail(t, errno, what, "create");
    close(fd);
    return cvd_target_sync_dir(t, dir, what);
}

int cvd_manifest_write(struct cvd_target *t, const struct cvd_manifest *m,
                       const unsigned char *mac_key)
{
    char json[PATH_MAX], mac[PATH_MAX], what[64], hex[66], *text = NULL;
    const char *id = m->info.id;
    size_t len;
    int r;

    if (!cvd_target_id_ok(id) || !volume_ok(m->info.volume))
        return cv_error(-EINVAL, "backup %s of volume %s: not a backup id or "
                        "volume name", id, m->info.volume);
    snprintf(what, sizeof what, "manifest %s", id);
    r = cvd_target_path(t, json, sizeof json, "backups/%s.json", id);
    if (r == 0)
        r = cvd_target_path(t, mac, sizeof mac, "backups/%s.mac", id);
    /* No MAC: the old one goes first, so it never vouches for new bytes. */
    if (r == 0 && !mac_key && unlink(mac) != 0 && errno != ENOENT)
        r = cvd_target_fail(t, errno, what, "unlink its MAC");
    if (r == 0)
        r = write_index(t, &m->info);
    if (r == 0)
        r = cvd_manifest_encode(m, &text, &len);
    if (r == 0)
        r = cvd_target_write_file(t, json, text, len, what);
    /* Then the MAC: until it is there the backup is not Completed. */
    if (r == 0 && mac_key)
        r = mac_hex(id, mac_key, text, len, hex);
    if (r == 0 && mac_key) {
        hex[64] = '\n';
        hex[65] = '\0';
        r = cvd_target_write_file(t, mac, hex, 65, what);
    }
    free(text);
    return r;
}

/* Checks text against the MAC file of id. */
static int check_mac(struct cvd_target *t, const char *id,
                     const unsigned char *key, const char *text, size_t len)
{
    char path[PATH_MAX], want[65], *stored = NULL;
    size_t n = 0;
    int r;

    r = cvd_target_path(t, path, sizeof path, "backups/%s.mac", id);
    if (r == 0)
        r = cvd_target_read_file(t, path, 4096, &stored, &n, "MAC");
    if (r == -ENOENT)
        return cv_error(-ENOENT, "backup %s: it has no MAC (%s.mac): it is "
                        "not Completed, or its MAC was removed", id, id);
    if (r < 0)
        return cv_error_prefix(r, "backup %s: ", id);
    if (n > 64 && strspn(stored + 64, "\r\n") == n - 64) {
        stored[64] = '\0';
        n = 64;
    }
    if (n != 64 || !cvd_target_hex_ok(stored))
        r = cv_error(-EBADMSG, "backup %s: its MAC file is not 64 hex digits",
                     id);
    if (r == 0)
        r = mac_hex(id, key, text, len, want);
    if (r == 0 && CRYPTO_memcmp(want, stored, 64) != 0)
        r = cv_error(-EBADMSG, "backup %s: its manifest does not match its "
                     "MAC: changed, or not made with this volume's key", id);
    free(stored);
    return r;
}

/* 1 if backup id has a MAC file. */
static int has_mac(struct cvd_target *t, const char *id)
{
    char path[PATH_MAX];

    return cvd_target_path(t, path, sizeof path, "backups/%s.mac", id) == 0 &&
           access(path, F_OK) == 0;
}

static int read_manifest(struct cvd_target *t, const char *id,
                         const unsigned char *mac_key, int with_blocks,
                         struct cvd_manifest *out)
{
    char path[PATH_MAX], what[64], *text = NULL;
    size_t len = 0;
    int r;

    memset(out, 0, sizeof *out);
    if (!cvd_target_id_ok(id))
        return cv_error(-EINVAL, "backup %s: not a backup id (\"bk-\" and 16 "
                        "hex digits)", id);
    snprintf(what, sizeof what, "manifest %s", id);
    r = cvd_target_path(t, path, sizeof path, "backups/%s.json", id);
    if (r == 0)
        r = cvd_target_read_file(t, path, MANIFEST_MAX, &text, &len, what);
    if (r == -ENOENT)
        return cv_error(-ENOENT, "backup %s: no such backup in target %s", id,
                        t->dir);
    if (r == 0 && mac_key)
        r = check_mac(t, id, mac_key, text, len);
    if (r == 0)
        r = cvd_manifest_decode(id, text, len, with_blocks, out);
    /* Completed in the manifest but no MAC yet: a cut between the two
     * writes, so the backup never finished (start-up marks it Failed). */
    if (r == 0 && !mac_key && out->info.state == CVD_BACKUP_COMPLETED &&
        !has_mac(t, id))
        out->info.state = CVD_BACKUP_IN_PROGRESS;
    free(text);
    return r;
}

int cvd_manifest_read(struct cvd_target *t, const char *id,
                      const unsigned char *mac_key, struct cvd_manifest *out)
{
    return read_manifest(t, id, mac_key, 1, out);
}

struct list {
    struct cvd_target *t;
    const char *volume;
    struct cvd_backup_info *v;
    size_t n, cap;
    int err;
};

static int list_add(struct list *l, const char *id)
{
    struct cvd_manifest m;
    struct cvd_backup_info *v;
    int r = read_manifest(l->t, id, NULL, 0, &m);

    if (r == -ENOENT)
        return 0;           /* an index entry left by a cut delete */
    if (r < 0) {
        /* An id just taken (cvd_target_new_id) is empty until written. */
        if (strstr(cv_last_error(), "does not parse: empty"))
            cvd_debug("%s", cv_last_error());
        else
            cvd_warn("backup target %s: %s", l->t->dir, cv_last_error());
        return 0;
    }
    if (l->volume && strcmp(m.info.volume, l->volume)) {
        cvd_warn("backup target %s: backup %s is of volume %s, not of %s "
                 "whose index lists it", l->t->dir, id, m.info.volume,
                 l->volume);
        return 0;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        v = realloc(l->v, l->cap * sizeof *v);
        if (!v)
            return cv_error(-ENOMEM, "backup target %s: list: out of memory",
                            l->t->dir);
        l->v = v;
    }
    l->v[l->n++] = m.info;
    return 0;
}

static int list_entry(struct list *l, const char *name)
{
    char id[CVD_BACKUP_ID_MAX + 1];
    size_t n = strlen(name);

    if (l->volume)
        return cvd_target_id_ok(name) ? list_add(l, name) : 0;
    if (n != 19 + 5 || strcmp(name + 19, ".json"))
        return 0;
    memcpy(id, name, 19);
    id[19] = '\0';
    return cvd_target_id_ok(id) ? list_add(l, id) : 0;
}

static int newest_first(const void *a, const void *b)
{
    const struct cvd_backup_info *x = a, *y = b;

    if (x->created != y->created)
        return x->created > y->created ? -1 : 1;
    return -strcmp(x->id, y->id);
}

int cvd_manifest_list(struct cvd_target *t, const char *volume,
                      struct cvd_backup_info **out, size_t *n)
{
    struct list l = { t, volume, NULL, 0, 0, 0 };
    char path[PATH_MAX];
    struct dirent *e;
    DIR *d;
    int r;

    if (volume && !volume_ok(volume))
        return cv_error(-EINVAL, "volume %s: not a volume name", volume);
    r = volume ? cvd_target_path(t, path, sizeof path, "volumes/%s", volume) :
        cvd_target_path(t, path, sizeof path, "backups");
    if (r < 0)
        return r;
    d = opendir(path);
    if (!d && !(volume && errno == ENOENT))
        return cvd_target_fail(t, errno, volume ? "index" : "backups",
                               "opendir");
    while (r == 0 && d && (e = readdir(d)))
        r = list_entry(&l, e->d_name);
    if (d)
        closedir(d);
    if (r < 0) {
        free(l.v);
        return r;
    }
    if (l.n)
        qsort(l.v, l.n, sizeof *l.v, newest_first);
    *out = l.v;
    *n = l.n;
    return 0;
}

/* volumes/ * /ID: the index entry, wherever it is (the manifest, which
 * says its volume, may be the broken thing being removed). */
static int remove_index(struct cvd_target *t, const char *id)
{
    char path[PATH_MAX];
    struct dirent *e;
    DIR *d;
    int r = cvd_target_path(t, path, sizeof path, "volumes");

    if (r < 0)
        return r;
    d = opendir(path);
    if (!d)
        return errno == ENOENT ? 0 : cvd_target_fail(t, errno, "volumes",
                                                     "opendir");
    while (r == 0 && (e = readdir(d))) {
        char entry[PATH_MAX];

        if (!volume_ok(e->d_name) ||
            cvd_target_path(t, entry, sizeof entry, "volumes/%s/%s",
                            e->d_name, id) < 0)
            continue;
        if (unlink(entry) != 0 && errno != ENOENT && errno != ENOTDIR)
            r = cvd_target_fail(t, errno, "index", "unlink");
    }
    closedir(d);
    return r;
}

int cvd_manifest_remove(struct cvd_target *t, const char *id)
{
    char json[PATH_MAX], mac[PATH_MAX], dir[PATH_MAX], what[64];
    int r = 0, gone = 0;

    if (!cvd_target_id_ok(id))
        return cv_error(-EINVAL, "backup %s: not a backup id", id);
    snprintf(what, sizeof what, "manifest %s", id);
    r = cvd_target_path(t, json, sizeof json, "backups/%s.json", id);
    if (r == 0)
        r = cvd_target_path(t, mac, sizeof mac, "backups/%s.mac", id);
    if (r == 0)
        r = cvd_target_path(t, dir, sizeof dir, "backups");
    if (r < 0)
        return r;
    /* The manifest first: once it is gone the backup is. */
    if (unlink(json) != 0) {
        if (errno != ENOENT)
            return cvd_target_fail(t, errno, what, "unlink");
        gone = 1;
    }
    if (unlink(mac) != 0 && errno != ENOENT)
        return cvd_target_fail(t, errno, what, "unlink its MAC");
    r = remove_index(t, id);
    if (r == 0)
        r = cvd_target_sync_dir(t, dir, "backups");
    if (r == 0 && gone)
        r = cv_error(-ENOENT, "backup %s: no such backup in target %s", id,
                     t->dir);
    return r;
}
