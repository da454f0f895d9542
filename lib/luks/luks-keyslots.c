/* Keyslots: unlocking one, checking a volume key, adding, changing and
 * removing keyslots, and what they are made of.  Each change goes to the
 * store through luks_commit (lib/luks/luks.c). */
#include "luks.h"
#include "store/backend.h"
#include "core/error.h"
#include "luks-internal.h"
#include "core/secmem.h"

#include <errno.h>
#include <libcryptsetup.h>
#include <string.h>

static int wrong_key(struct cv_luks *l)
{
    return cv_error(-CV_EWRONGKEY, "%s: wrong passphrase (no keyslot opens "
                    "with it)", l->b->name);
}

/* With every keyslot removed (key remove --force) libcryptsetup has no
 * keyslot to try and returns -ENOENT, whose strerror would mislead. */
static int no_keyslot(struct cv_luks *l)
{
    return cv_error(-ENOENT, "%s: no keyslot left; no passphrase can unlock "
                    "it", l->b->name);
}

/* A keyslot that could not be added for want of room says so: libcryptsetup
 * answers -EINVAL and "No space for new keyslot".  0 if there was room. */
static int no_room(struct cv_luks *l)
{
    struct cv_luks_info info;

    cv_luks_info(l, &info);
    if (info.nslots < info.max_slots)
        return 0;
    return cv_error(-ENOSPC, "%s: adding keyslot: no room left in the "
                    "keyslots area (%llu bytes: %d keyslots of this key "
                    "size, %d in use); remove one first", l->b->name,
                    (unsigned long long)info.keyslots_size, info.max_slots,
                    info.nslots);
}

int cv_luks_keyslot_pbkdf(struct cv_luks *l, int keyslot, struct cv_pbkdf *out)
{
    struct crypt_pbkdf_type pb;
    int r = crypt_keyslot_get_pbkdf(l->cd, keyslot, &pb);

    if (r < 0)
        return cv_error(r, "%s: keyslot %d: no key derivation: %s",
                        l->b->name, keyslot, luks_cs_msg(l, r));
    out->type = pb.type;
    out->iterations = pb.iterations;
    out->memory_kib = pb.max_memory_kb;
    out->time_ms = pb.time_ms;
    return 0;
}

double cv_luks_keyslot_seconds(const struct cv_luks *l)
{
    return l->keyslot_seconds;
}

/* A keyslot the caller names must exist and open the data segment. */
static int check_keyslot(struct cv_luks *l, int keyslot)
{
    switch (crypt_keyslot_status(l->cd, keyslot)) {
    case CRYPT_SLOT_ACTIVE:
    case CRYPT_SLOT_ACTIVE_LAST:
        return 0;
    case CRYPT_SLOT_INACTIVE:
        return cv_error(-ENOENT, "%s: keyslot %d is not in use", l->b->name,
                        keyslot);
    case CRYPT_SLOT_UNBOUND:
        return cv_error(-EINVAL, "%s: keyslot %d holds no key of the data "
                        "segment (unbound)", l->b->name, keyslot);
    default:
        return cv_error(-EINVAL, "%s: there is no keyslot %d (0 to %d)",
                        l->b->name, keyslot,
                        crypt_keyslot_max(crypt_get_type(l->cd)) - 1);
    }
}

int cv_luks_unlock_keyslot(struct cv_luks *l, int keyslot, const char *pass,
                           size_t passlen, unsigned char **key,
                           size_t *keylen)
{
    size_t alloc = (size_t)crypt_get_volume_key_size(l->cd), len = alloc;
    unsigned char *k = NULL;
    int r;

    r = luks_need_keyslots(l, "unlock");
    if (r == 0 && keyslot != CRYPT_ANY_SLOT)
        r = check_keyslot(l, keyslot);
    if (r < 0)
        return r;
    k = cv_secmem_alloc(alloc);
    if (!k)
        return cv_error_prefix(-ENOMEM, "%s", l->b->name);
    r = crypt_volume_key_get(l->cd, keyslot, (char *)k, &len, pass, passlen);
    if (r == -EPERM && keyslot != CRYPT_ANY_SLOT)
        r = cv_error(-CV_EWRONGKEY, "%s: wrong passphrase for keyslot %d",
                     l->b->name, keyslot);
    else if (r == -EPERM)
        r = wrong_key(l);
    else if (r == -ENOENT)
        r = no_keyslot(l);
    else if (r < 0)
        r = cv_error(r, "%s: unlocking: %s", l->b->name, luks_cs_msg(l, r));
    if (r < 0) {
        cv_secmem_free(k, alloc);
        return r;
    }
    *key = k;
    *keylen = len;
    return r;
}

int cv_luks_verify_key(struct cv_luks *l, const unsigned char *key,
                       size_t keylen)
{
    int r;

    if (keylen != (size_t)crypt_get_volume_key_size(l->cd))
        return cv_error(-CV_EWRONGKEY, "%s: a %zu-byte key for a volume "
                        "with %d-byte keys", l->b->name, keylen,
                        crypt_get_volume_key_size(l->cd));
    r = crypt_volume_key_verify(l->cd, (const char *)key, keylen);
    if (r == -EPERM)
        return cv_error(-CV_EWRONGKEY, "%s: wrong volume key (the header's "
                        "digest does not match it)", l->b->name);
    if (r < 0)
        return cv_error(r, "%s: checking the volume key: %s", l->b->name,
                        luks_cs_msg(l, r));
    return 0;
}

int cv_luks_unlock(struct cv_luks *l, const char *pass, size_t passlen,
                   unsigned char **key, size_t *keylen)
{
    return cv_luks_unlock_keyslot(l, CRYPT_ANY_SLOT, pass, passlen, key,
                                  keylen);
}

int cv_luks_add_key(struct cv_luks *l, const char *pass, size_t passlen,
                    const char *newpass, size_t newlen,
                    const struct cv_pbkdf *pbkdf)
{
    int slot, r;

    r = luks_need_keyslots(l, "add a keyslot");
    if (r == 0)
        r = luks_set_pbkdf(l, crypt_get_type(l->cd), pbkdf);
    if (r < 0)
        return r;
    l->keyslot_seconds = luks_now();
    slot = crypt_keyslot_add_by_passphrase(l->cd, CRYPT_ANY_SLOT, pass,
                                           passlen, newpass, newlen);
    l->keyslot_seconds = luks_now() - l->keyslot_seconds;
    if (slot == -EPERM)
        return wrong_key(l);
    if (slot < 0 && (r = no_room(l)) < 0)
        return r;
    if (slot < 0)
        return cv_error(slot, "%s: adding keyslot: %s", l->b->name,
                        luks_cs_msg(l, slot));
    r = luks_commit(l);
    return r < 0 ? r : slot;
}

int cv_luks_change_key(struct cv_luks *l, const char *pass, size_t passlen,
                       const char *newpass, size_t newlen,
                       const struct cv_pbkdf *pbkdf)
{
    int slot, r;

    r = luks_need_keyslots(l, "change a keyslot");
    if (r == 0)
        r = luks_set_pbkdf(l, crypt_get_type(l->cd), pbkdf);
    if (r < 0)
        return r;
    l->keyslot_seconds = luks_now();
    slot = crypt_keyslot_change_by_passphrase(l->cd, CRYPT_ANY_SLOT,
                                              CRYPT_ANY_SLOT, pass, passlen,
                                              newpass, newlen);
    l->keyslot_seconds = luks_now() - l->keyslot_seconds;
    if (slot == -EPERM)
        return wrong_key(l);
    if (slot == -ENOENT)
        return no_keyslot(l);
    if (slot < 0)
        return cv_error(slot, "%s: changing keyslot: %s", l->b->name,
                        luks_cs_msg(l, slot));
    r = luks_commit(l);
    return r < 0 ? r : slot;
}

int cv_luks_remove_key(struct cv_luks *l, const char *pass, size_t passlen,
                       int force)
{
    struct cv_luks_info info;
    int slot, r;

    r = luks_need_keyslots(l, "remove a keyslot");
    if (r < 0)
        return r;
    /* With no device name this only tests the passphrase, as
     * cryptsetup open --test-passphrase does. */
    slot = crypt_activate_by_passphrase(l->cd, NULL, CRYPT_ANY_SLOT, pass,
                                        passlen, 0);
    if (slot == -EPERM)
        return wrong_key(l);
    if (slot == -ENOENT)
        return no_keyslot(l);
    if (slot < 0)
        return cv_error(slot, "%s: checking passphrase: %s", l->b->name,
                        luks_cs_msg(l, slot));
    cv_luks_info(l, &info);
    if (info.nslots <= 1 && !force)
        return cv_error(-EBUSY, "%s: keyslot %d is the last one; without it "
                        "the data can never be read again (use --force to "
                        "remove it anyway)", l->b->name, slot);
    r = crypt_keyslot_destroy(l->cd, slot);
    if (r < 0)
        return cv_error(r, "%s: removing keyslot %d: %s", l->b->name, slot,
                        luks_cs_msg(l, r));
    r = luks_commit(l);
    return r < 0 ? r : slot;
}
