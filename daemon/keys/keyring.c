/* The cluster KEKs this node has unsealed (keyring.h). */
#include "keyring.h"
#include "daemon.h"
#include "core/error.h"
#include "luks/escrow.h"
#include "luks/kek-token.h"
#include "log.h"
#include "meta/meta.h"
#include "crypto/seal.h"
#include "core/secmem.h"
#include "tpm.h"

#include <errno.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct entry {
    uint32_t gen;
    unsigned char *kek;         /* locked memory, CV_KEK_LEN */
};

struct cvd_keyring {
    struct cvd *d;
    /* What "software" protection seals with: the node key.  NULL: the
     * store's seal key, which on a single node is the node key. */
    const unsigned char *node_key;
    pthread_mutex_t lock;
    struct entry *e;
    size_t n, cap;
    /* A cluster: gets a generation this node has no copy of from a peer
     * (rotation-cluster.c); NULL on one node. */
    cvd_keyring_fetch_fn fetch;
    void *fetch_arg;
};

int cvd_keyring_new(struct cvd *d, struct cvd_keyring **out)
{
    struct cvd_keyring *k = calloc(1, sizeof *k);

    if (!k)
        return cv_error(-ENOMEM, "keyring: out of memory");
    k->d = d;
    pthread_mutex_init(&k->lock, NULL);
    *out = k;
    return 0;
}

void cvd_keyring_free(struct cvd_keyring *k)
{
    size_t i;

    if (!k)
        return;
    for (i = 0; i < k->n; i++)
        cv_secmem_free(k->e[i].kek, CV_KEK_LEN);
    free(k->e);
    pthread_mutex_destroy(&k->lock);
    free(k);
}

/* The software seal binds the blob to its generation and node, so a
 * sealed KEK cannot be passed off as another generation's (generation 0:
 * the cluster's seal key). */
static void seal_name(uint32_t gen, const char *node, char *buf, size_t len)
{
    if (gen == 0)
        snprintf(buf, len, "cluster-seal-key@%s", node);
    else
        snprintf(buf, len, "kek-generation-%u@%s", gen, node);
}

static const unsigned char *software_key(struct cvd_keyring *k)
{
    return k->node_key ? k->node_key : k->d->meta->seal_key;
}

void cvd_keyring_set_node_key(struct cvd_keyring *k,
                              const unsigned char *node_key)
{
    k->node_key = node_key;
}

static int seal(struct cvd_keyring *k, const char *protection, uint32_t gen,
                const unsigned char *kek, struct cvd_kek_rec *rec)
{
    struct cvd *d = k->d;
    char name[128];

    if (!strcmp(protection, CVD_KEK_TPM))
        return cvd_tpm_seal(d->cfg.tpm_tcti, kek, CV_KEK_LEN, &rec->sealed,
                            &rec->sealed_len);
    seal_name(gen, d->cfg.node_name, name, sizeof name);
    return cv_seal(software_key(k), name, kek, CV_KEK_LEN, &rec->sealed,
                   &rec->sealed_len);
}

static int unseal(struct cvd_keyring *k, const struct cvd_kek_rec *rec,
                  struct cv_secret *out)
{
    struct cvd *d = k->d;
    char name[128];
    int r;

    if (!strcmp(rec->protection, CVD_KEK_TPM)) {
        r = cvd_tpm_unseal(d->cfg.tpm_tcti, rec->sealed, rec->sealed_len,
                           out);
    } else if (!strcmp(rec->protection, CVD_KEK_SOFTWARE)) {
        seal_name(rec->gen, rec->node, name, sizeof name);
        r = cv_unseal(software_key(k), name, rec->sealed, rec->sealed_len,
                      out);
        if (r == -CV_EWRONGKEY)
            r = cv_error(r, "the node key %s/node.key did not seal it (was "
                         "node.key replaced?)", d->cfg.data_dir);
    } else {
        r = cv_error(-ENOTSUP, "unknown protection \"%s\"", rec->protection);
    }
    if (r == 0 && out->len != CV_KEK_LEN)
        r = cv_error(-EINVAL, "unsealed %zu bytes, not %d", out->len,
                     CV_KEK_LEN);
    return r;
}

int cvd_keyring_make(struct cvd_keyring *k, uint32_t gen,
                     const char *protection, struct cvd_kek_rec *rec)
{
    unsigned char *kek = cv_secmem_alloc(CV_KEK_LEN);
    int r;

    memset(rec, 0, sizeof *rec);
    if (!kek)
        return cv_error(-ENOMEM, "KEK generation %u: out of memory", gen);
    r = RAND_priv_bytes(kek, CV_KEK_LEN) == 1 ? 0 :
        cv_error(-EIO, "KEK generation %u: no random bytes", gen);
    if (r == 0) {
        rec->gen = gen;
        snprintf(rec->node, sizeof rec->node, "%s", k->d->cfg.node_name);
        snprintf(rec->protection, sizeof rec->protection, "%s", protection);
        rec->created = (int64_t)time(NULL);
        r = seal(k, protection, gen, kek, rec);
    }
    cv_secmem_free(kek, CV_KEK_LEN);
    if (r < 0) {
        cvd_kek_rec_free(rec);
        return cv_error_prefix(r, "KEK generation %u: sealing (%s)", gen,
                               protection);
    }
    return 0;
}

int cvd_keyring_seal(struct cvd_keyring *k, uint32_t gen,
                     const char *protection, const unsigned char *key,
                     struct cvd_kek_rec *rec)
{
    int r;

    memset(rec, 0, sizeof *rec);
    if (strcmp(protection, CVD_KEK_TPM) && strcmp(protection, CVD_KEK_SOFTWARE))
        return cv_error(-ENOTSUP, "unknown protection \"%s\"", protection);
    rec->gen = gen;
    snprintf(rec->node, sizeof rec->node, "%s", k->d->cfg.node_name);
    snprintf(rec->protection, sizeof rec->protection, "%s", protection);
    rec->created = (int64_t)time(NULL);
    r = seal(k, protection, gen, key, rec);
    if (r < 0) {
        cvd_kek_rec_free(rec);
        return gen ? cv_error_prefix(r, "KEK generation %u: sealing (%s)",
                                     gen, protection)
                   : cv_error_prefix(r, "the cluster seal key: sealing (%s)",
                                     protection);
    }
    return 0;
}

int cvd_keyring_unseal(struct cvd_keyring *k, const struct cvd_kek_rec *rec,
                       struct cv_secret *out)
{
    int r = unseal(k, rec, out);

    if (r < 0) {
        cv_secret_free(out);
        return rec->gen ? cv_error_prefix(r, "KEK generation %u of node %s",
                                          rec->gen, rec->node)
                        : cv_error_prefix(r, "the cluster seal key of node %s",
                                          rec->node);
    }
    return 0;
}

static const unsigned char *find(struct cvd_keyring *k, uint32_t gen)
{
    size_t i;

    for (i = 0; i < k->n; i++)
        if (k->e[i].gen == gen)
            return k->e[i].kek;
    return NULL;
}

static int add(struct cvd_keyring *k, uint32_t gen, struct cv_secret *s,
               const unsigned char **kek)
{
    struct entry *bigger;
    unsigned char *copy;

    if (k->n == k->cap) {
        bigger = realloc(k->e, (k->cap ? 2 * k->cap : 4) * sizeof *k->e);
        if (!bigger)
            return cv_error(-ENOMEM, "keyring: out of memory");
        k->e = bigger;
        k->cap = k->cap ? 2 * k->cap : 4;
    }
    copy = cv_secmem_alloc(CV_KEK_LEN);
    if (!copy)
        return cv_error(-ENOMEM, "keyring: out of memory");
    memcpy(copy, s->data, CV_KEK_LEN);
    k->e[k->n].gen = gen;
    k->e[k->n].kek = copy;
    k->n++;
    *kek = copy;
    return 0;
}

void cvd_keyring_set_fetch(struct cvd_keyring *k, cvd_keyring_fetch_fn fn,
                           void *arg)
{
    pthread_mutex_lock(&k->lock);
    k->fetch = fn;
    k->fetch_arg = arg;
    pthread_mutex_unlock(&k->lock);
}

/* Called with k->lock held: the cached copy, or this node's stored one
 * unsealed and cached. */
static int get_locked(struct cvd_keyring *k, uint32_t gen,
                      const unsigned char **kek)
{
    struct cvd_kek_rec rec = { 0 };
    struct cv_secret s = { 0 };
    int r;

    *kek = find(k, gen);
    if (*kek)
        return 0;
    r = k->d->meta->ops->kek_get(k->d->meta, gen, k->d->cfg.node_name, &rec);
    if (r == 0)
        r = unseal(k, &rec, &s);
    if (r == 0)
        r = add(k, gen, &s, kek);
    if (r == 0)
        cvd_info("cluster KEK generation %u: unsealed (%s)", gen,
                 rec.protection);
    cv_secret_free(&s);
    cvd_kek_rec_free(&rec);
    return r;
}

int cvd_keyring_get(struct cvd_keyring *k, uint32_t gen,
                    const unsigned char **kek)
{
    cvd_keyring_fetch_fn fetch;
    void *arg;
    int r;

    pthread_mutex_lock(&k->lock);
    r = get_locked(k, gen, kek);
    fetch = k->fetch;
    arg = k->fetch_arg;
    pthread_mutex_unlock(&k->lock);
    /* A cluster member without its copy yet (a new generation, or the
     * first one just enabled on another node): from a peer, now, without
     * the lock (it asks over the network). */
    if (r == -ENOENT && fetch) {
        r = fetch(arg, gen);
        if (r == 0) {
            pthread_mutex_lock(&k->lock);
            r = get_locked(k, gen, kek);
            pthread_mutex_unlock(&k->lock);
        }
    }
    return r < 0 ? cv_error_prefix(r, "cluster KEK generation %u", gen) : 0;
}

int cvd_keyring_adopt(struct cvd_keyring *k, uint32_t gen,
                      const char *protection, const unsigned char *kek)
{
    struct cvd_kek_rec rec = { 0 };
    struct cv_secret s = { .data = (char *)kek, .len = CV_KEK_LEN };
    const unsigned char *have;
    int r;

    r = cvd_keyring_seal(k, gen, protection, kek, &rec);
    if (r == 0)
        r = k->d->meta->ops->kek_put(k->d->meta, &rec);
    cvd_kek_rec_free(&rec);
    if (r < 0)
        return cv_error_prefix(r, "cluster KEK generation %u", gen);
    pthread_mutex_lock(&k->lock);
    if (!find(k, gen))
        r = add(k, gen, &s, &have);
    pthread_mutex_unlock(&k->lock);
    return r;
}

int cvd_keyring_all(struct cvd_keyring *k, struct cv_kek_gen **gens,
                    size_t *n)
{
    struct cv_kek_gen *out = NULL;
    const unsigned char *kek;
    uint32_t *list = NULL;
    size_t count = 0, i;
    int r;

    *gens = NULL;
    *n = 0;
    r = k->d->meta->ops->kek_list(k->d->meta, k->d->cfg.node_name, &list,
                                  &count);
    if (r == 0 && count == 0)
        r = cv_error(-ENOENT, "cluster: no KEK stored for node %s",
                     k->d->cfg.node_name);
    if (r == 0 && !(out = calloc(count, sizeof *out)))
        r = cv_error(-ENOMEM, "keyring: out of memory");
    for (i = 0; r == 0 && i < count; i++) {
        r = cvd_keyring_get(k, list[i], &kek);
        if (r == 0 && !(out[i].kek = cv_secmem_alloc(CV_KEK_LEN)))
            r = cv_error(-ENOMEM, "keyring: out of memory");
        if (r == 0) {
            memcpy(out[i].kek, kek, CV_KEK_LEN);
            out[i].gen = list[i];
        }
    }
    free(list);
    if (r < 0) {
        cv_kek_gens_free(out, count);
        return r;
    }
    *gens = out;
    *n = count;
    return 0;
}
