/* KEK escrow documents (escrow.h).  The recovery key is argon2id of the
 * recovery passphrase.  libcryptsetup does not export its KDF
 * (crypt_pbkdf_perform is internal to it), so the derivation is
 * libargon2's, the reference implementation that libcryptsetup itself
 * links for its argon2 keyslots. */
#include "escrow.h"
#include "core/base64.h"
#include "core/error.h"
#include "core/json-util.h"
#include "kek-token.h"
#include "crypto/seal.h"
#include "core/secmem.h"

#include <argon2.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FORMAT "cryptvol-kek-escrow"
#define VERSION 1
#define KDF_TYPE "argon2id"
#define SALT_LEN 32
#define DEFAULT_TIME 4
#define DEFAULT_MEMORY (256 * 1024)
#define DEFAULT_PARALLEL 2
/* An escrow is opened on a recovery machine from a file that may have been
 * changed: bound what it can ask of the KDF, and of the parser. */
#define TIME_MAX 100
#define MEMORY_MAX (4 * 1024 * 1024)       /* KiB: 4 GiB */
#define PARALLEL_MAX 16
#define SALT_MIN 16
#define SALT_MAX 64
#define GENS_MAX 65536
#define SEALED_MAX 1024
#define DOC_MAX (16 * 1024 * 1024)

struct kdf {
    uint32_t time, memory_kib, parallel;
    unsigned char *salt;
    size_t salt_len;
};

/* One generation as read from a document, still sealed. */
struct sealed {
    uint32_t gen;
    unsigned char *blob;
    size_t len;
};

static int check_cost(uint32_t time, uint32_t memory_kib, uint32_t parallel)
{
    if (time < 1 || time > TIME_MAX)
        return cv_error(-EINVAL, "KEK escrow: argon2id time cost %u is not "
                        "within 1 to %d", time, TIME_MAX);
    if (parallel < 1 || parallel > PARALLEL_MAX)
        return cv_error(-EINVAL, "KEK escrow: argon2id parallelism %u is not "
                        "within 1 to %d", parallel, PARALLEL_MAX);
    /* argon2 needs 8 KiB per lane. */
    if (memory_kib < 8 * parallel || memory_kib > MEMORY_MAX)
        return cv_error(-EINVAL, "KEK escrow: argon2id memory of %u KiB is "
                        "not within %u KiB to 4 GiB", memory_kib,
                        8 * parallel);
    return 0;
}

/* The recovery key, CV_SEAL_KEY_LEN bytes of locked memory in *key. */
static int derive(const struct kdf *k, const char *pass, size_t passlen,
                  unsigned char **key)
{
    unsigned char *out = cv_secmem_alloc(CV_SEAL_KEY_LEN);
    int r;

    *key = NULL;
    if (!out)
        return cv_error_prefix(-ENOMEM, "KEK escrow");
    r = argon2id_hash_raw(k->time, k->memory_kib, k->parallel, pass, passlen,
                          k->salt, k->salt_len, out, CV_SEAL_KEY_LEN);
    if (r != ARGON2_OK) {
        cv_secmem_free(out, CV_SEAL_KEY_LEN);
        return cv_error(r == ARGON2_MEMORY_ALLOCATION_ERROR ? -ENOMEM : -EINVAL,
                        "KEK escrow: argon2id (%u KiB): %s", k->memory_kib,
                        argon2_error_message(r));
    }
    *key = out;
    return 0;
}

static void gen_name(char *buf, size_t size, uint32_t gen)
{
    snprintf(buf, size, "kek-generation-%u", gen);
}

static int check_gens(const struct cv_kek_gen *gens, size_t n)
{
    size_t i, j;

    if (n == 0 || n > GENS_MAX)
        return cv_error(-EINVAL, "KEK escrow: %zu KEK generations (1 to %d)",
                        n, GENS_MAX);
    for (i = 0; i < n; i++) {
        if (!gens[i].kek)
            return cv_error(-EINVAL, "KEK escrow: generation %u has no key",
                            gens[i].gen);
        for (j = 0; j < i; j++)
            if (gens[j].gen == gens[i].gen)
                return cv_error(-EINVAL, "KEK escrow: generation %u is "
                                "given twice", gens[i].gen);
    }
    return 0;
}

/* "generations": [{"generation": N, "sealed": "<base64>"}, ...] */
static int seal_gens(const struct cv_kek_gen *gens, size_t n,
                     const unsigned char *key, json_object *arr)
{
    unsigned char *blob = NULL;
    char name[32], *b64 = NULL;
    json_object *o;
    size_t i, len;
    int r = 0;

    for (i = 0; i < n && r == 0; i++) {
        gen_name(name, sizeof name, gens[i].gen);
        r = cv_seal(key, name, gens[i].kek, CV_KEK_LEN, &blob, &len);
        if (r < 0)
            return cv_error_prefix(r, "KEK escrow");
        if (cv_base64_encode(blob, len, &b64) < 0 ||
            cv_json_append(arr, o = json_object_new_object()) ||
            cv_json_add(o, "generation", json_object_new_int64(gens[i].gen)) ||
            cv_json_add(o, "sealed", json_object_new_string(b64)))
            r = cv_error(-ENOMEM, "KEK escrow: out of memory");
        free(blob);
        free(b64);
        blob = NULL;
        b64 = NULL;
    }
    return r;
}

static int kdf_json(const struct kdf *k, json_object **out)
{
    json_object *o = json_object_new_object();
    char *salt = NULL;
    int r = -ENOMEM;

    if (o && cv_base64_encode(k->salt, k->salt_len, &salt) == 0 &&
        !cv_json_add(o, "type", json_object_new_string(KDF_TYPE)) &&
        !cv_json_add(o, "time", json_object_new_int64(k->time)) &&
        !cv_json_add(o, "memory_kib", json_object_new_int64(k->memory_kib)) &&
        !cv_json_add(o, "parallel", json_object_new_int64(k->parallel)) &&
        !cv_json_add(o, "salt", json_object_new_string(salt)))
        r = 0;
    free(salt);
    if (r < 0) {
        json_object_put(o);
        return cv_error(r, "KEK escrow: out of memory");
    }
    *out = o;
    return 0;
}

static void rfc3339_now(char *buf, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The document's text, pretty-printed with a final newline (malloc'ed). */
static int doc_text(json_object *root, char **text)
{
    const char *s = json_object_to_json_string_ext(root,
                        JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                        JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t len = s ? strlen(s) : 0;

    *text = s ? malloc(len + 2) : NULL;
    if (!*text)
        return cv_error(-ENOMEM, "KEK escrow: out of memory");
    memcpy(*text, s, len);
    memcpy(*text + len, "\n", 2);
    return 0;
}

int cv_escrow_make(const struct cv_kek_gen *gens, size_t n,
                   const char *cluster_id, const char *pass, size_t passlen,
                   const struct cv_escrow_cost *cost, char **text)
{
    unsigned char salt[SALT_LEN], *key = NULL;
    struct kdf k = { DEFAULT_TIME, DEFAULT_MEMORY, DEFAULT_PARALLEL,
                     salt, sizeof salt };
    json_object *root = NULL, *kdf = NULL, *arr = NULL;
    char created[32];
    int r;

    *text = NULL;
    if (cost && cost->time)
        k.time = cost->time;
    if (cost && cost->memory_kib)
        k.memory_kib = cost->memory_kib;
    if (cost && cost->parallel)
        k.parallel = cost->parallel;
    r = check_gens(gens, n);
    if (r == 0)
        r = check_cost(k.time, k.memory_kib, k.parallel);
    if (r < 0)
        return r;
    if (RAND_bytes(salt, sizeof salt) != 1)
        return cv_error(-EIO, "KEK escrow: no random bytes for the salt");
    r = derive(&k, pass, passlen, &key);
    if (r < 0)
        return r;
    rfc3339_now(created, sizeof created);
    r = kdf_json(&k, &kdf);
    if (r < 0)
        goto out;
    root = json_object_new_object();
    if (!root ||
        cv_json_add(root, "format", json_object_new_string(FORMAT)) ||
        cv_json_add(root, "version", json_object_new_int(VERSION)) ||
        cv_json_add(root, "cluster",
                    json_object_new_string(cluster_id ? cluster_id : "")) ||
        cv_json_add(root, "created", json_object_new_string(created))) {
        json_object_put(kdf);
        r = cv_error(-ENOMEM, "KEK escrow: out of memory");
        goto out;
    }
    /* cv_json_add owns kdf from here, added or not. */
    if (cv_json_add(root, "kdf", kdf) ||
        cv_json_add(root, "generations", arr = json_object_new_array())) {
        r = cv_error(-ENOMEM, "KEK escrow: out of memory");
        goto out;
    }
    r = seal_gens(gens, n, key, arr);
    if (r == 0)
        r = doc_text(root, text);
out:
    json_object_put(root);
    cv_secmem_free(key, CV_SEAL_KEY_LEN);
    return r;
}

static int bad_doc(const char *what)
{
    return cv_error(-EINVAL, "KEK escrow: %s", what);
}

static int parse_kdf(json_object *root, struct kdf *k)
{
    json_object *o;
    const char *type, *salt;
    int64_t time, mem, par;

    if (!json_object_object_get_ex(root, "kdf", &o) ||
        !json_object_is_type(o, json_type_object))
        return bad_doc("no \"kdf\" object");
    type = cv_json_string(o, "type");
    if (!type || strcmp(type, KDF_TYPE) != 0)
        return bad_doc("\"kdf\" \"type\" is not " KDF_TYPE);
    if (cv_json_int(o, "time", 0, UINT32_MAX, &time) < 0 ||
        cv_json_int(o, "memory_kib", 0, UINT32_MAX, &mem) < 0 ||
        cv_json_int(o, "parallel", 0, UINT32_MAX, &par) < 0)
        return bad_doc("\"kdf\" needs integers \"time\", \"memory_kib\" "
                       "and \"parallel\"");
    k->time = (uint32_t)time;
    k->memory_kib = (uint32_t)mem;
    k->parallel = (uint32_t)par;
    salt = cv_json_string(o, "salt");
    if (!salt || cv_base64_decode(salt, SALT_MAX, &k->salt, &k->salt_len) < 0 ||
        k->salt_len < SALT_MIN)
        return bad_doc("\"kdf\" \"salt\" is not base64 of 16 to 64 bytes");
    return check_cost(k->time, k->memory_kib, k->parallel);
}

static int parse_gen(json_object *o, struct sealed *s)
{
    const char *b64;
    int64_t gen;

    if (!json_object_is_type(o, json_type_object) ||
        cv_json_int(o, "generation", 0, UINT32_MAX, &gen) < 0)
        return bad_doc("a generation has no \"generation\" number");
    s->gen = (uint32_t)gen;
    b64 = cv_json_string(o, "sealed");
    if (!b64 || cv_base64_decode(b64, SEALED_MAX, &s->blob, &s->len) < 0)
        return cv_error(-EINVAL, "KEK escrow: generation %u: \"sealed\" is "
                        "not base64 of at most %d bytes", s->gen, SEALED_MAX);
    return 0;
}

static int parse_gens(json_object *root, struct sealed **out, size_t *n)
{
    json_object *arr;
    struct sealed *s;
    size_t i, j, len;
    int r = 0;

    if (!json_object_object_get_ex(root, "generations", &arr) ||
        !json_object_is_type(arr, json_type_array) ||
        (len = json_object_array_length(arr)) == 0 || len > GENS_MAX)
        return bad_doc("\"generations\" is not a list of 1 to 65536 KEK "
                       "generations");
    s = calloc(len, sizeof *s);
    if (!s)
        return cv_error(-ENOMEM, "KEK escrow: out of memory");
    for (i = 0; i < len && r == 0; i++) {
        r = parse_gen(json_object_array_get_idx(arr, i), &s[i]);
        for (j = 0; j < i && r == 0; j++)
            if (s[j].gen == s[i].gen)
                r = cv_error(-EINVAL, "KEK escrow: generation %u is listed "
                             "twice", s[i].gen);
    }
    *out = s;
    *n = len;
    return r;
}

static int parse_doc(const char *text, size_t len, struct kdf *k,
                     struct sealed **gens, size_t *n)
{
    json_tokener *tok = NULL;
    json_object *root = NULL;
    const char *format, *nul = memchr(text, '\0', len);
    int64_t version;
    size_t end;
    int r;

    if (nul)
        len = (size_t)(nul - text);
    if (len > DOC_MAX)
        return bad_doc("larger than 16 MiB");
    tok = json_tokener_new();
    if (!tok)
        return cv_error(-ENOMEM, "KEK escrow: out of memory");
    root = json_tokener_parse_ex(tok, text, (int)len);
    end = json_tokener_get_parse_end(tok);
    while (root && end < len && strchr(" \t\r\n", text[end]))
        end++;
    if (!root || end != len || !json_object_is_type(root, json_type_object)) {
        r = bad_doc("not a JSON object");
        goto out;
    }
    format = cv_json_string(root, "format");
    if (!format || strcmp(format, FORMAT) != 0) {
        r = bad_doc("not a cryptvol KEK escrow (no \"format\": \"" FORMAT
                    "\")");
        goto out;
    }
    if (cv_json_int(root, "version", INT64_MIN, INT64_MAX, &version) < 0) {
        r = bad_doc("no integer \"version\"");
        goto out;
    }
    if (version != VERSION) {
        r = cv_error(-EINVAL, "KEK escrow: version %lld is not supported "
                     "(this cryptvol reads version %d)", (long long)version,
                     VERSION);
        goto out;
    }
    r = parse_kdf(root, k);
    if (r == 0)
        r = parse_gens(root, gens, n);
out:
    json_object_put(root);
    json_tokener_free(tok);
    return r;
}

static void free_sealed(struct sealed *s, size_t n)
{
    size_t i;

    for (i = 0; s && i < n; i++)
        free(s[i].blob);
    free(s);
}

/* Unseals every generation.  With GCM a wrong key and a changed blob look
 * alike; when none opens it is the passphrase (or the KDF parameters),
 * when some do the others were changed. */
static int unseal_gens(const unsigned char *key, const struct sealed *s,
                       size_t n, struct cv_kek_gen *gens)
{
    struct cv_secret kek;
    size_t i, opened = 0;
    char name[32];
    int r = 0, bad = -1;

    for (i = 0; i < n; i++) {
        gen_name(name, sizeof name, s[i].gen);
        gens[i].gen = s[i].gen;
        r = cv_unseal(key, name, s[i].blob, s[i].len, &kek);
        if (r == 0 && kek.len != CV_KEK_LEN) {
            cv_secret_free(&kek);
            return cv_error(-EINVAL, "KEK escrow: generation %u holds %zu "
                            "bytes, not a %d-byte KEK", s[i].gen, kek.len,
                            CV_KEK_LEN);
        }
        if (r == 0) {
            gens[i].kek = (unsigned char *)kek.data;
            opened++;
        } else if (r == -CV_EWRONGKEY) {
            bad = (int)i;
        } else {
            return cv_error_prefix(-EINVAL, "KEK escrow: generation %u",
                                   s[i].gen);
        }
    }
    if (opened == 0)
        return cv_error(-CV_EWRONGKEY, "KEK escrow: wrong recovery passphrase "
                        "(or the escrow's KDF parameters were changed)");
    if (bad >= 0)
        return cv_error(-EINVAL, "KEK escrow: generation %u was changed (the "
                        "passphrase opens the others)", s[bad].gen);
    return 0;
}

int cv_escrow_open(const char *text, size_t len, const char *pass,
                   size_t passlen, struct cv_kek_gen **gens, size_t *n)
{
    struct kdf k = { 0 };
    struct sealed *s = NULL;
    struct cv_kek_gen *g = NULL;
    unsigned char *key = NULL;
    size_t count = 0;
    int r;

    *gens = NULL;
    *n = 0;
    r = parse_doc(text, len, &k, &s, &count);
    if (r == 0)
        r = derive(&k, pass, passlen, &key);
    if (r == 0 && !(g = calloc(count, sizeof *g)))
        r = cv_error(-ENOMEM, "KEK escrow: out of memory");
    if (r == 0)
        r = unseal_gens(key, s, count, g);
    if (r == 0) {
        *gens = g;
        *n = count;
        g = NULL;
    }
    cv_kek_gens_free(g, count);
    cv_secmem_free(key, CV_SEAL_KEY_LEN);
    free_sealed(s, count);
    free(k.salt);
    return r;
}

void cv_kek_gens_free(struct cv_kek_gen *gens, size_t n)
{
    size_t i;

    for (i = 0; gens && i < n; i++)
        cv_secmem_free(gens[i].kek, CV_KEK_LEN);
    free(gens);
}
