/* The cryptvol-kek LUKS2 token (kek-token.h).  Its JSON comes from the
 * volume's header, which anyone holding the image can change, so every
 * field is checked before it is used. */
#include "kek-token.h"
#include "core/base64.h"
#include "core/error.h"
#include "core/json-util.h"
#include "crypto/seal.h"
#include "core/secmem.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A sealed passphrase is CV_KEK_PASS_LEN + CV_SEAL_OVERHEAD bytes; a later
 * seal format may add a few, never a kilobyte. */
#define WRAPPED_MAX 1024

/* The associated data of a wrapped volume key: never the same as a
 * wrapped passphrase's, so one cannot be passed off as the other. */
static void key_aad(const char *uuid, char *buf, size_t len)
{
    snprintf(buf, len, "%s/volume-key", uuid);
}

/* High-entropy passphrase: no stretching needed (as systemd-cryptenroll
 * does for its TPM and FIDO2 keyslots); 1000 is LUKS2's floor. */
static const struct cv_pbkdf cheap_pbkdf = {
    .type = "pbkdf2", .iterations = 1000,
};

static int bad_token(struct cv_luks *l, int id, const char *what)
{
    return cv_error(-EINVAL, "%s: %s token %d is malformed: %s",
                    cv_luks_name(l), CV_KEK_TOKEN_TYPE, id, what);
}

/* keyslots: exactly one, a decimal keyslot number. */
static int parse_keyslot(json_object *root, int *keyslot)
{
    json_object *slots, *slot;
    const char *s;
    int n = 0;

    if (!json_object_object_get_ex(root, "keyslots", &slots) ||
        !json_object_is_type(slots, json_type_array) ||
        json_object_array_length(slots) != 1)
        return -1;
    slot = json_object_array_get_idx(slots, 0);
    if (!json_object_is_type(slot, json_type_string))
        return -1;
    s = json_object_get_string(slot);
    if (!*s || strlen(s) > 2)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        n = n * 10 + (*s - '0');
    }
    if (n >= CV_LUKS_MAX_SLOTS)
        return -1;
    *keyslot = n;
    return 0;
}

static int parse_token(struct cv_luks *l, int id, const char *json,
                       struct cv_kek_token *t)
{
    json_object *root;
    const char *type, *wrapped;
    int64_t gen;
    int r = 0;

    root = json_tokener_parse(json);
    if (!root || !json_object_is_type(root, json_type_object)) {
        r = bad_token(l, id, "not a JSON object");
        goto out;
    }
    type = cv_json_string(root, "type");
    if (!type || strcmp(type, CV_KEK_TOKEN_TYPE) != 0) {
        r = bad_token(l, id, "\"type\" is not " CV_KEK_TOKEN_TYPE);
        goto out;
    }
    if (parse_keyslot(root, &t->keyslot) < 0) {
        r = bad_token(l, id, "\"keyslots\" must list exactly one keyslot "
                      "number");
        goto out;
    }
    if (cv_json_int(root, "kek_generation", 0, UINT32_MAX, &gen) < 0) {
        r = bad_token(l, id, "\"kek_generation\" must be an integer from "
                      "0 to 4294967295");
        goto out;
    }
    t->gen = (uint32_t)gen;
    wrapped = cv_json_string(root, "wrapped");
    r = wrapped ? cv_base64_decode(wrapped, WRAPPED_MAX, &t->wrapped,
                                   &t->wrapped_len) : -EINVAL;
    if (r == -ENOMEM) {
        r = cv_error(r, "%s: out of memory", cv_luks_name(l));
        goto out;
    }
    if (r < 0 || t->wrapped_len < CV_SEAL_OVERHEAD) {
        r = bad_token(l, id, "\"wrapped\" is not base64 of a sealed "
                      "passphrase");
        goto out;
    }
    wrapped = cv_json_string(root, "wrapped_key");
    r = wrapped ? cv_base64_decode(wrapped, WRAPPED_MAX, &t->wrapped_key,
                                   &t->wrapped_key_len) : 0;
    if (r == -ENOMEM) {
        r = cv_error(r, "%s: out of memory", cv_luks_name(l));
        goto out;
    }
    if (r < 0 || (wrapped && t->wrapped_key_len < CV_SEAL_OVERHEAD)) {
        r = bad_token(l, id, "\"wrapped_key\" is not base64 of a sealed "
                      "key");
        goto out;
    }
    t->token = id;
out:
    json_object_put(root);
    if (r < 0)
        cv_kek_token_free(t);
    return r;
}

int cv_kek_token_get(struct cv_luks *l, struct cv_kek_token *t)
{
    char *json = NULL;
    int id, r;

    memset(t, 0, sizeof *t);
    id = cv_luks_token_find(l, CV_KEK_TOKEN_TYPE, &json);
    if (id < 0)
        return id;
    r = parse_token(l, id, json, t);
    free(json);
    return r;
}

void cv_kek_token_free(struct cv_kek_token *t)
{
    if (!t)
        return;
    free(t->wrapped);
    free(t->wrapped_key);
    memset(t, 0, sizeof *t);
}

/* The token's JSON (malloc'ed). */
static int token_json(struct cv_luks *l, int keyslot, uint32_t gen,
                      const unsigned char *wrapped, size_t len,
                      const unsigned char *wkey, size_t wkeylen, char **json)
{
    json_object *root = json_object_new_object(), *slots = NULL;
    char slot[16], *b64 = NULL, *kb64 = NULL;
    const char *text;
    int r = -ENOMEM;

    *json = NULL;
    snprintf(slot, sizeof slot, "%d", keyslot);
    if (!root || cv_base64_encode(wrapped, len, &b64) < 0 ||
        cv_json_add(root, "type", json_object_new_string(CV_KEK_TOKEN_TYPE)) ||
        cv_json_add(root, "keyslots", slots = json_object_new_array()) ||
        cv_json_append(slots, json_object_new_string(slot)) ||
        cv_json_add(root, "kek_generation", json_object_new_int64(gen)) ||
        cv_json_add(root, "wrapped", json_object_new_string(b64)))
        goto out;
    if (wkey && (cv_base64_encode(wkey, wkeylen, &kb64) < 0 ||
                 cv_json_add(root, "wrapped_key",
                             json_object_new_string(kb64))))
        goto out;
    text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
    if (text && (*json = strdup(text)))
        r = 0;
out:
    json_object_put(root);
    free(b64);
    free(kb64);
    return r < 0 ? cv_error(r, "%s: token JSON: out of memory",
                            cv_luks_name(l)) : 0;
}

/* What a token wraps: the keyslot passphrase, and the volume key when
 * known (NULL: the token carries none). */
struct wrap_in {
    const char *kpass;
    size_t kpasslen;
    const unsigned char *key;
    size_t keylen;
};

/* Seals w under kek, bound to the volume's UUID, and stores the token as
 * id (CV_LUKS_NEW_TOKEN: a new one).  Returns the token id. */
static int wrap_put(struct cv_luks *l, int id, int keyslot,
                    const struct wrap_in *w, const unsigned char *kek,
                    uint32_t gen)
{
    const char *uuid = cv_luks_uuid(l);
    unsigned char *blob = NULL, *kblob = NULL;
    char *json = NULL, aad[80];
    size_t len, klen = 0;
    int r;

    key_aad(uuid, aad, sizeof aad);
    r = cv_seal(kek, uuid, w->kpass, w->kpasslen, &blob, &len);
    if (r == 0 && w->key)
        r = cv_seal(kek, aad, w->key, w->keylen, &kblob, &klen);
    if (r < 0) {
        cv_error_prefix(r, "%s", cv_luks_name(l));
        goto out;
    }
    r = token_json(l, keyslot, gen, blob, len, kblob, klen, &json);
    if (r == 0)
        r = cv_luks_token_put(l, id, json);
out:
    free(blob);
    free(kblob);
    free(json);
    return r;
}

/* What every new token needs: tokens (LUKS2), a UUID to bind to, and no
 * cryptvol-kek token already (a second would never be read). */
static int check_can_add(struct cv_luks *l)
{
    char *json = NULL;
    int id;

    id = cv_luks_token_find(l, CV_KEK_TOKEN_TYPE, &json);
    free(json);
    if (id >= 0)
        return cv_error(-EEXIST, "%s: already has a %s token (%d); rewrap "
                        "it rather than add another", cv_luks_name(l),
                        CV_KEK_TOKEN_TYPE, id);
    if (id != -ENOENT)
        return id;
    cv_clear_error();
    if (!cv_luks_uuid(l)[0])
        return cv_error(-EINVAL, "%s: the LUKS2 header has no UUID to bind "
                        "a %s token to", cv_luks_name(l), CV_KEK_TOKEN_TYPE);
    return 0;
}

int cv_kek_token_add(struct cv_luks *l, int keyslot, const char *kpass,
                     size_t kpasslen, const unsigned char *kek, uint32_t gen)
{
    unsigned char *key = NULL;
    size_t keylen = 0;
    int r;

    r = check_can_add(l);
    if (r < 0)
        return r;
    /* A token for a keyslot its passphrase does not open would fail only
     * on the day it is needed. */
    r = cv_luks_unlock_keyslot(l, keyslot, kpass, kpasslen, &key, &keylen);
    if (r >= 0) {
        struct wrap_in w = { kpass, kpasslen, key, keylen };
        r = wrap_put(l, CV_LUKS_NEW_TOKEN, keyslot, &w, kek, gen);
    }
    cv_secmem_free(key, keylen);
    return r < 0 ? r : 0;
}

/* After the keyslot was added but its token could not be stored, removes
 * the keyslot again: nobody else knows its passphrase.  Keeps the message
 * of what failed. */
static int drop_keyslot(struct cv_luks *l, int keyslot,
                        const struct cv_secret *kp, int r)
{
    char why[256];

    snprintf(why, sizeof why, "%s", cv_last_error());
    if (cv_luks_remove_key(l, kp->data, kp->len, 0) < 0)
        return cv_error(r, "%s (keyslot %d stays, without a token)", why,
                        keyslot);
    return cv_error(r, "%s", why);
}

int cv_kek_enroll(struct cv_luks *l, const char *pass, size_t passlen,
                  const unsigned char *kek, uint32_t gen,
                  const struct cv_pbkdf *pbkdf)
{
    struct cv_secret kp = { 0 };
    unsigned char *key = NULL;
    size_t keylen = 0;
    int slot = -1, r;

    r = check_can_add(l);
    if (r < 0)
        return r;
    kp.alloc = kp.len = CV_KEK_PASS_LEN;
    kp.data = cv_secmem_alloc(kp.alloc);
    if (!kp.data) {
        r = cv_error_prefix(-ENOMEM, "%s", cv_luks_name(l));
        goto out;
    }
    if (RAND_priv_bytes((unsigned char *)kp.data, (int)kp.len) != 1) {
        r = cv_error(-EIO, "%s: no random bytes for the keyslot passphrase",
                     cv_luks_name(l));
        goto out;
    }
    slot = cv_luks_add_key(l, pass, passlen, kp.data, kp.len,
                           pbkdf ? pbkdf : &cheap_pbkdf);
    if (slot < 0) {
        r = slot;
        goto out;
    }
    r = cv_luks_unlock_keyslot(l, slot, kp.data, kp.len, &key, &keylen);
    if (r >= 0) {
        struct wrap_in w = { kp.data, kp.len, key, keylen };
        r = wrap_put(l, CV_LUKS_NEW_TOKEN, slot, &w, kek, gen);
    }
    if (r < 0)
        r = drop_keyslot(l, slot, &kp, r);
out:
    cv_secmem_free(key, keylen);
    cv_secret_free(&kp);
    return r < 0 ? r : slot;
}

int cv_kek_token_unwrap(const struct cv_kek_token *t, const unsigned char *kek,
                        const char *uuid, struct cv_secret *pass)
{
    int r;

    r = cv_unseal(kek, uuid, t->wrapped, t->wrapped_len, pass);
    if (r == -CV_EWRONGKEY)
        return cv_error(r, "volume %s: KEK generation %u does not unwrap its "
                        "%s token (another KEK, or a token copied from "
                        "another volume)", uuid, t->gen, CV_KEK_TOKEN_TYPE);
    if (r < 0)
        return cv_error_prefix(r, "volume %s: %s token", uuid,
                               CV_KEK_TOKEN_TYPE);
    return 0;
}

int cv_kek_token_unwrap_key(const struct cv_kek_token *t,
                            const unsigned char *kek, const char *uuid,
                            unsigned char **key, size_t *keylen)
{
    struct cv_secret k = { 0 };
    char aad[80];
    int r;

    *key = NULL;
    *keylen = 0;
    if (!t->wrapped_key)
        return -ENOENT;
    key_aad(uuid, aad, sizeof aad);
    r = cv_unseal(kek, aad, t->wrapped_key, t->wrapped_key_len, &k);
    if (r == -CV_EWRONGKEY)
        return cv_error(r, "volume %s: KEK generation %u does not unwrap the "
                        "volume key in its %s token", uuid, t->gen,
                        CV_KEK_TOKEN_TYPE);
    if (r < 0)
        return cv_error_prefix(r, "volume %s: %s token", uuid,
                               CV_KEK_TOKEN_TYPE);
    /* cv_secret is locked memory already; hand it over as a key. */
    *key = (unsigned char *)k.data;
    *keylen = k.len;
    if (k.alloc != k.len) {
        *key = cv_secmem_alloc(k.len);
        if (*key)
            memcpy(*key, k.data, k.len);
        cv_secret_free(&k);
        if (!*key)
            return cv_error(-ENOMEM, "volume %s: out of memory", uuid);
    }
    return 0;
}

int cv_kek_token_rewrap(struct cv_luks *l, const struct cv_kek_token *t,
                        const unsigned char *oldkek,
                        const unsigned char *newkek, uint32_t newgen)
{
    const char *uuid = cv_luks_uuid(l);
    struct cv_secret kp = { 0 };
    struct wrap_in w = { 0 };
    unsigned char *key = NULL;
    size_t keylen = 0;
    int r;

    if (t->gen == newgen)
        return 0;
    r = cv_kek_token_unwrap(t, oldkek, uuid, &kp);
    if (r == 0 && t->wrapped_key)
        r = cv_kek_token_unwrap_key(t, oldkek, uuid, &key, &keylen);
    if (r < 0) {
        cv_error_prefix(r, "%s", cv_luks_name(l));
        goto out;
    }
    w.kpass = kp.data;
    w.kpasslen = kp.len;
    w.key = key;
    w.keylen = keylen;
    /* The same token id: libcryptsetup replaces the token in the JSON
     * area, and the header write is the one commit point. */
    r = wrap_put(l, t->token, t->keyslot, &w, newkek, newgen);
out:
    cv_secmem_free(key, keylen);
    cv_secret_free(&kp);
    return r < 0 ? r : 0;
}
