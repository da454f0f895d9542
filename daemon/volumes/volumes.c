/* Volume lifecycle: create (also of a volume pending its secret, and of
 * a pending one once the secret exists), delete (resize:
 * volumes-resize.c).
 *
 * Each change first moves the record to a transient state with a
 * compare-and-set (creating, resizing, deleting), so two requests cannot
 * work on one volume and the registry refuses to open it meanwhile; then
 * touches the file; then settles the record.  A crash in between leaves a
 * state that cvd_volumes_recover() understands. */
#include "volumes.h"
#include "store/backend.h"
#include "store/chain.h"
#include "classes.h"
#include "cluster/cluster.h"
#include "daemon.h"
#include "keys/cluster-kek.h"
#include "core/error.h"
#include "core/size.h"
#include "luks/kek-token.h"
#include "log.h"
#include "core/secmem.h"
#include "volumes-util.h"
#include "jobs.h"
#include "repl/repl.h"
#include "snapshots.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GENERATED_SECRET_LEN 32
/* Room for any header cryptsetup makes (LUKS2 default: 16 MiB) before the
 * data offset is known; the file is cut to size after formatting. */
#define HEADER_ROOM (64ull << 20)
#define MAX_SIZE CVD_VOLUME_MAX_SIZE
/* A new LUKS2 volume's keyslots area holds this many keyslots (its data
 * then starts at 2 MiB for AES-256, 1 MiB for AES-128), not
 * libcryptsetup's 16 MiB default: libcryptsetup fills the whole area with random bytes at format,
 * which was most of what a create cost.  The product needs at most three
 * at once (a user secret, the cluster KEK's, and a rekey's new one before
 * the old goes); the rest is room for keyslots added by hand. */
#define VOLUME_KEYSLOTS 4

int cvd_volume_in_use(struct cvd *d, const char *name)
{
    return d->reg ? cvd_registry_in_use(d->reg, name, 1) : 0;
}

int cvd_volume_get(struct cvd *d, const char *name, struct cvd_volume_rec *out)
{
    int r = cvd_check_name("volume", name);

    return r < 0 ? r : d->meta->ops->volume_get(d->meta, name, out);
}

static unsigned sector_size_of(const struct cvd_volume_req *req)
{
    return req->plaintext || req->luks_version == 1 ? 512 : 4096;
}

/* The API's range, checked before anything is made: one sector to 1 EiB,
 * whole sectors.  (What the file system holds is found when the image is
 * made: cvd_size_error.) */
static int check_size(const char *name, uint64_t size, unsigned ss)
{
    char want[64], least[32], most[32];

    cv_format_size_exact(size, want, sizeof want);
    cv_format_size(ss, least, sizeof least);
    cv_format_size(MAX_SIZE, most, sizeof most);
    if (size == 0 || size > MAX_SIZE)
        return cv_error(-EINVAL, "volume %s: size %s is out of range "
                        "(allowed: %s to %s, in %u-byte sectors)", name,
                        want, least, most, ss);
    if (size % ss)
        return cv_error(-EINVAL, "volume %s: size %s is not a multiple of "
                        "the %u-byte sector size", name, want, ss);
    return 0;
}

static int check_request(const struct cvd_volume_req *req)
{
    const char *n = req->name;
    unsigned ss = sector_size_of(req);
    int r = cvd_check_name("volume", n);

    if (r < 0)
        return r;
    if (req->secret && (r = cvd_check_name("secret", req->secret)) < 0)
        return r;
    r = check_size(n, req->size, ss);
    if (r < 0)
        return r;
    if (req->plaintext && req->secret)
        return cv_error(-EINVAL, "volume %s: a plaintext volume has no "
                        "secret", n);
    if (req->plaintext)
        return 0;
    if (req->luks_version != 1 && req->luks_version != 2)
        return cv_error(-EINVAL, "volume %s: type must be luks2 or luks1", n);
    if (req->aes_bits != 128 && req->aes_bits != 256)
        return cv_error(-EINVAL, "volume %s: cipher must be aes-256 or "
                        "aes-128", n);
    if (req->luks_version == 1 && req->have_pbkdf && req->pbkdf.type &&
        strcmp(req->pbkdf.type, "pbkdf2"))
        return cv_error(-EINVAL, "volume %s: LUKS1 supports only the pbkdf2 "
                        "key derivation", n);
    return 0;
}

/* Replicas: 1 (none) anywhere; 2 or more only in a cluster with as many
 * Online nodes (placement is asked now, so that a create that cannot be
 * placed makes nothing); min from 1 to replicas, replicas - 1 when not
 * given.  *n, *min get the numbers. */
static int check_replicas(struct cvd *d, const struct cvd_volume_req *req,
                          unsigned *n, unsigned *min)
{
    char nodes[CVD_MAX_REPLICAS][CVD_NAME_MAX + 1];
    const char *name = req->name;
    int r;

    *n = req->replicas ? req->replicas : 1;
    *min = req->min_replicas;
    if (*n < 2 && *min > 1)
        return cv_error(-EINVAL, "volume %s: minReplicas %u needs as many "
                        "replicas (it has 1)", name, *min);
    if (*n < 2)
        return 0;
    if (!d->node)
        return cv_error(-EINVAL, "volume %s: a single node has no replicas "
                        "(asked for %u; replication needs a cluster)", name,
                        *n);
    if (*n > CVD_MAX_REPLICAS)
        return cv_error(-EINVAL, "volume %s: %u replicas (at most %d)", name,
                        *n, CVD_MAX_REPLICAS);
    if (*min > *n)
        return cv_error(-EINVAL, "volume %s: minReplicas %u is more than its "
                        "%u replicas", name, *min, *n);
    if (!*min)
        *min = *n - 1;
    r = cvd_node_place_replicas(d, *n, NULL, 0, nodes);
    /* 400, not 500: the request asks for more than the cluster has. */
    if (r < 0)
        return cv_error_prefix(-EINVAL, "volume %s", name);
    return 0;
}

/* With cluster encryption on, every volume is LUKS2 (the KEK token needs
 * LUKS2's token area) and none is plaintext.  *kek_gen: the generation its
 * token gets (0: encryption off). */
int cvd_volume_cluster_check(struct cvd *d, const struct cvd_volume_req *req,
                         uint32_t *kek_gen)
{
    const unsigned char *kek;
    int r = cvd_cluster_current_kek(d->cluster, kek_gen, &kek);

    if (r < 0)
        return cv_error_prefix(r, "volume %s", req->name);
    if (*kek_gen && req->plaintext)
        return cv_error(-EINVAL, "volume %s: cluster encryption is enabled: "
                        "every volume is encrypted, a plaintext one is "
                        "refused", req->name);
    if (*kek_gen && req->luks_version == 1)
        return cv_error(-EINVAL, "volume %s: cluster encryption keeps each "
                        "volume's wrapped key in a LUKS2 token; LUKS1 has no "
                        "tokens (use type luks2)", req->name);
    return 0;
}

/* Volume create records the volume before it reads the cluster state a
 * second time, and enabling records Enabling before it counts volumes, so
 * a volume made without a KEK keyslot can never end up in an Enabled
 * cluster. */
static int cluster_recheck(struct cvd *d, const char *name, uint32_t kek_gen)
{
    const unsigned char *kek;
    uint32_t now;
    int r = cvd_cluster_current_kek(d->cluster, &now, &kek);

    if (r == 0 && !now != !kek_gen)
        r = cv_error(-EBUSY, "volume %s: cluster encryption was enabled "
                     "meanwhile; create it again", name);
    return r;
}

/* The passphrase: the named secret's value, or 32 fresh random bytes that
 * *gen seals (as a secret owned by the volume) for volume_add.  A volume
 * of an encrypted cluster without a user secret gets random bytes that
 * only its KEK token keeps: nothing is stored in the metadata. */
int cvd_volume_passphrase(struct cvd *d, const struct cvd_volume_req *req,
                          uint32_t kek_gen, struct cv_secret *pass,
                          struct cvd_secret_rec *gen)
{
    int r;

    if (req->secret) {
        r = cvd_meta_secret_value(d->meta, req->secret, pass);
        if (r == -ENOENT)
            r = cv_error(-ENOENT, "volume %s: secret \"%s\" does not exist",
                         req->name, req->secret);
        return r;
    }
    pass->alloc = pass->len = GENERATED_SECRET_LEN;
    pass->data = cv_secmem_alloc(pass->alloc);
    if (!pass->data)
        return cv_error_prefix(-ENOMEM, "volume %s", req->name);
    if (RAND_priv_bytes((unsigned char *)pass->data, GENERATED_SECRET_LEN) != 1)
        return cv_error(-EIO, "volume %s: no random bytes for its secret",
                        req->name);
    if (kek_gen)
        return 0;
    return cvd_meta_seal(d->meta, req->name, pass->data, pass->len,
                         req->name, gen);
}

void cvd_volume_pbkdf(struct cvd *d, const struct cvd_volume_req *req,
                      struct cv_pbkdf *p)
{
    static const struct cv_pbkdf high_entropy = { .type = "pbkdf2",
                                                  .iterations = 1000 };

    if (req->have_pbkdf)
        *p = req->pbkdf;
    else if (!req->secret)
        *p = high_entropy;  /* 256 random bits need no stretching */
    else
        *p = d->cfg.pbkdf;
}

/* Gives a just formatted volume its cryptvol-kek token: for the keyslot
 * pass opens when that is the KEK's own random passphrase, else (a user
 * secret) for a second keyslot.  The generation is read again here: a
 * volume that waited (pending) gets the one current now. */
int cvd_volume_enroll_kek(struct cvd *d, struct cv_luks *l,
                      const struct cv_secret *pass, struct cvd_volume_rec *v)
{
    const unsigned char *kek;
    struct cv_luks_info info;
    uint32_t gen;
    int r = cvd_cluster_current_kek(d->cluster, &gen, &kek);

    if (r == 0 && !gen)
        r = cv_error(-EINVAL, "cluster encryption is not enabled");
    if (r == 0 && !v->secret[0]) {
        r = cv_luks_info(l, &info);
        if (r == 0)
            r = cv_kek_token_add(l, info.slots[0], pass->data, pass->len, kek,
                                 gen);
    } else if (r == 0) {
        r = cv_kek_enroll(l, pass->data, pass->len, kek, gen, NULL);
    }
    if (r >= 0)
        v->kek_gen = gen;
    return r < 0 ? cv_error_prefix(r, "volume %s: KEK keyslot", v->name) : 0;
}

static void log_first_keyslot(struct cv_luks *l, const struct cvd_volume_rec *v)
{
    struct cv_luks_info info;
    char whose[CVD_NAME_MAX + 32];

    if (cv_luks_info(l, &info) < 0 || info.nslots < 1)
        return;
    if (v->secret[0])
        snprintf(whose, sizeof whose, "secret %s", v->secret);
    else
        snprintf(whose, sizeof whose, "the cluster KEK");
    cvd_log_keyslot(l, v->name, info.slots[0], whose);
}

/* Formats the header of the new chain at v->path and cuts its head to the
 * data offset plus size.  The chain is new (all holes) and has its
 * ".creating" name, which no one opens: the format is not flushed on its
 * own; make_volume syncs the chain once before it gets its name. */
static int format_file(struct cvd *d, const struct cvd_volume_req *req,
                       const struct cv_secret *pass, struct cvd_volume_rec *v)
{
    struct cv_format_params fp = { .luks_version = req->luks_version,
                                   .key_bits = req->aes_bits,
                                   .new_store = 1 };
    struct cv_chain *c = NULL;
    struct cv_backend *b = NULL;
    struct cv_luks *l = NULL;
    struct cv_luks_info info;
    int r;

    cvd_volume_pbkdf(d, req, &fp.pbkdf);
    if (req->luks_version == 2)
        fp.keyslots = VOLUME_KEYSLOTS;
    r = cv_chain_open(v->path, NULL, 0, &c);
    if (r == 0)
        b = cv_chain_backend(c);
    if (r == 0)
        r = cv_luks_format_open(b, &fp, pass->data, pass->len, &l);
    if (r == 0)
        log_first_keyslot(l, v);
    if (r == 0 && v->kek_gen)
        r = cvd_volume_enroll_kek(d, l, pass, v);
    if (r == 0)
        r = cv_luks_info(l, &info);
    if (r == 0)
        r = cv_chain_set_data_offset(c, info.data_offset);
    if (r == 0)
        r = cv_chain_resize(c, info.data_offset + req->size);
    if (r == 0)
        r = cv_chain_flush(c);
    if (r == 0) {
        snprintf(v->uuid, sizeof v->uuid, "%s", info.uuid);
        snprintf(v->cipher, sizeof v->cipher, "%s", info.cipher);
        v->key_bits = info.key_bits;
        v->sector_size = info.sector_size;
        v->data_offset = info.data_offset;
    }
    cv_luks_free(l);
    cv_chain_close(c);
    return r < 0 ? cv_error_prefix(r, "volume %s", v->name) : 0;
}

static void new_record(struct cvd *d, const struct cvd_volume_req *req,
                       struct cvd_volume_rec *v)
{
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", req->name);
    v->size = req->size;
    snprintf(v->type, sizeof v->type, "%s", req->plaintext ? "plaintext" :
             req->luks_version == 1 ? "luks1" : "luks2");
    snprintf(v->cipher, sizeof v->cipher, "none");
    v->sector_size = sector_size_of(req);
    snprintf(v->secret, sizeof v->secret, "%s", req->plaintext ? "" :
             req->secret ? req->secret : req->name);
    snprintf(v->class_name, sizeof v->class_name, "%s",
             req->class_name ? req->class_name : "");
    cvd_volume_path(d, req->name, v->path, sizeof v->path);
    snprintf(v->state, sizeof v->state, CVD_VOL_CREATING);
    v->created = (int64_t)time(NULL);
    cvd_node_place(d, v);
}

/* Makes the file of v (state creating) under its ".creating" name,
 * formats it, puts it at its own path (never over a file already there:
 * that one is not ours) and marks v ready: the one step create and the
 * pending retry share.  On failure the file made here is removed; the
 * record is the caller's to settle. */
static int make_volume(struct cvd *d, const struct cvd_volume_req *req,
                       const struct cv_secret *pass, struct cvd_volume_rec *v)
{
    char final[sizeof v->path];
    int r, made, placed = 0;

    snprintf(final, sizeof final, "%s", v->path);
    r = cvd_aside_path(final, CVD_CREATING_SUFFIX, v->path, sizeof v->path);
    if (r < 0)
        return cv_error_prefix(r, "volume %s", v->name);
    r = cvd_store_make(d, v, req->plaintext ? 0 : HEADER_ROOM, req->size,
                       NULL);
    made = r == 0;              /* else it removed what it made */
    if (r == 0 && !req->plaintext)
        r = format_file(d, req, pass, v);
    /* The content (synced by the chain's flush and create), then the
     * name: cvd_rename_file syncs the directory, which makes the
     * ".creating" name's creation and its rename durable together
     * (recovery handles a cut before, between or after). */
    if (r == 0) {
        r = cvd_rename_file(v->path, final, 1);
        if (r == -EEXIST)
            r = cv_error(-EEXIST, "volume %s: %s already exists with no "
                         "volume record (left over? move it away)", v->name,
                         final);
        placed = r == 0;
    }
    if (r < 0 && made && !placed)
        cvd_store_remove(v->path);  /* the .creating chain, ours */
    snprintf(v->path, sizeof v->path, "%s", final);
    if (r == 0) {
        snprintf(v->state, sizeof v->state, CVD_VOL_READY);
        v->wait_secret[0] = '\0';
        r = d->meta->ops->volume_update(d->meta, v, CVD_VOL_CREATING);
    }
    if (r < 0 && placed)
        cvd_store_remove(v->path);  /* placed by us a moment ago */
    return r;
}

/* A volume whose secret does not exist yet: recorded with no file, the
 * secret in wait_secret (the secret field must name one that exists), and
 * the cipher it will get.  The secret may have appeared just now, before
 * the record could be seen by cvd_secret_create's retry: try once. */
static int create_pending(struct cvd *d, const struct cvd_volume_req *req,
                          uint32_t kek_gen, struct cvd_volume_rec *v)
{
    int r;

    new_record(d, req, v);
    v->kek_gen = kek_gen;       /* it gets a KEK keyslot once made */
    v->secret[0] = '\0';
    snprintf(v->wait_secret, sizeof v->wait_secret, "%s", req->secret);
    snprintf(v->cipher, sizeof v->cipher, "aes-xts-plain64");
    v->key_bits = 2 * req->aes_bits;
    snprintf(v->state, sizeof v->state, CVD_VOL_PENDING);
    r = d->meta->ops->volume_add(d->meta, v, NULL);
    if (r < 0)
        return r;
    cvd_info("volume %s: pending: waiting for secret \"%s\"", v->name,
             v->wait_secret);
    r = cvd_volume_finish_pending(d, v);
    if (r < 0 && r != -ENOENT && r != -EBUSY)
        cvd_warn("%s", cv_last_error());
    return 0;
}

/* The record reserves the name (and stores a generated secret) before the
 * file exists, so a concurrent create of the same name fails cleanly. */
int cvd_volume_create(struct cvd *d, const struct cvd_volume_req *in,
                      struct cvd_volume_rec *out)
{
    struct cvd_secret_rec gen = { 0 };
    struct cv_secret pass = { 0 };
    struct cvd_volume_req req;
    struct cvd_volume_rec v;
    char first[CVD_ERROR_MAX], secret[CVD_NAME_MAX + 1], human[64];
    uint32_t kek_gen = 0;
    unsigned replicas = 1, min = 0;
    int r, recorded = 0, made = 0;

    r = cvd_class_volume_req(d, in, &req, secret);
    if (r == 0)
        r = check_request(&req);
    if (r == 0)
        r = check_replicas(d, &req, &replicas, &min);
    if (r == 0)
        r = cvd_volume_cluster_check(d, &req, &kek_gen);
    if (r == 0 && !req.plaintext) {
        r = cvd_volume_passphrase(d, &req, kek_gen, &pass, &gen);
        /* A replica set is made with the chain: a volume with none yet
         * cannot have one. */
        if (r == -ENOENT && req.secret && replicas > 1)
            r = cv_error(-EINVAL, "volume %s: secret \"%s\" does not exist "
                         "yet, and a replicated volume cannot wait for it "
                         "(create the secret first)", req.name, req.secret);
        if (r == -ENOENT && req.secret) {
            r = create_pending(d, &req, kek_gen, &v);
            goto out;
        }
    }
    if (r < 0)
        goto out;
    new_record(d, &req, &v);
    v.kek_gen = kek_gen;
    if (kek_gen && !req.secret)
        v.secret[0] = '\0';    /* only its KEK token opens it */
    r = d->meta->ops->volume_add(d->meta, &v, gen.sealed ? &gen : NULL);
    if (r == -EEXIST && gen.sealed && strstr(cv_last_error(), "secret"))
        r = cv_error(-EEXIST, "volume %s: a secret called %s already exists "
                     "(name it as the volume's secret, or pick another "
                     "volume name)", req.name, req.name);
    if (r < 0)
        goto out;
    recorded = 1;
    r = cluster_recheck(d, req.name, kek_gen);
    if (r == 0)
        r = make_volume(d, &req, &pass, &v);
    made = r == 0;
    /* This node InSync, the others Rebuilding: the repair loop copies. */
    if (r == 0 && replicas > 1)
        r = cvd_repl_create_set(d, req.name, replicas, min);
out:
    snprintf(first, sizeof first, "%s", cv_last_error());
    if (r < 0 && made) {
        cvd_undo(first, cvd_repl_delete(d, req.name));
        cvd_undo(first, cvd_store_remove(v.path));
    }
    if (r < 0 && recorded)
        cvd_undo(first, cvd_space_volume_remove(d, req.name));
    if (r == 0 && !strcmp(v.state, CVD_VOL_READY))
        cvd_info("volume %s: created (%s, %s, %s%s%s; %u replica%s)", v.name,
                 v.type, cv_format_size_exact(v.size, human, sizeof human),
                 v.secret[0] ? "secret " :
                 v.kek_gen ? "" : "no encryption", v.secret,
                 v.kek_gen ? (v.secret[0] ? ", cluster KEK" : "cluster KEK")
                           : "", replicas, replicas == 1 ? "" : "s");
    if (r == 0 && out)
        *out = v;
    cvd_secret_rec_free(&gen);
    cv_secret_free(&pass);
    return r;
}

/* The request a pending record stands for. */
static void pending_req(const struct cvd_volume_rec *v, const char *secret,
                        struct cvd_volume_req *req)
{
    memset(req, 0, sizeof *req);
    req->name = v->name;
    req->size = v->size;
    req->secret = secret;
    req->class_name = v->class_name[0] ? v->class_name : NULL;
    req->luks_version = !strcmp(v->type, "luks1") ? 1 : 2;
    req->aes_bits = v->key_bits / 2;
}

int cvd_volume_finish_pending(struct cvd *d, struct cvd_volume_rec *v)
{
    struct cvd_secret_rec gen = { 0 };
    struct cv_secret pass = { 0 };
    struct cvd_volume_req req;
    char secret[CVD_NAME_MAX + 1], first[CVD_ERROR_MAX], human[64];
    int r;

    snprintf(secret, sizeof secret, "%s", v->wait_secret);
    pending_req(v, secret, &req);
    r = cvd_volume_passphrase(d, &req, v->kek_gen, &pass, &gen);
    if (r < 0)
        goto out;
    /* The secret in the record from here on: it cannot be deleted while
     * the volume is made. */
    snprintf(v->secret, sizeof v->secret, "%s", secret);
    snprintf(v->state, sizeof v->state, CVD_VOL_CREATING);
    r = d->meta->ops->volume_update(d->meta, v, CVD_VOL_PENDING);
    if (r < 0)
        goto out;
    r = make_volume(d, &req, &pass, v);
    if (r < 0) {
        snprintf(first, sizeof first, "%s", cv_last_error());
        v->secret[0] = '\0';
        snprintf(v->wait_secret, sizeof v->wait_secret, "%s", secret);
        snprintf(v->state, sizeof v->state, CVD_VOL_PENDING);
        cvd_undo(first, cvd_space_volume_update(d, v, CVD_VOL_CREATING));
        cv_error_prefix(r, "volume %s: making it now that secret \"%s\" "
                        "exists (it stays Pending)", v->name, secret);
    }
out:
    if (r == 0)
        cvd_info("volume %s: created from pending (%s, %s, secret %s)",
                 v->name, v->type,
                 cv_format_size_exact(v->size, human, sizeof human),
                 v->secret);
    cvd_secret_rec_free(&gen);
    cv_secret_free(&pass);
    return r;
}

/* Puts v back to state from after a failure whose message is first.  If
 * that fails too, v stays in its transient state with its file untouched,
 * which recovery puts back at the next start (never deletes): the message
 * says so. */
void cvd_volume_put_back(struct cvd *d, struct cvd_volume_rec *v,
                         const char *from, int err)
{
    char first[CVD_ERROR_MAX], why[CVD_ERROR_MAX], now[sizeof v->state];
    int u;

    snprintf(first, sizeof first, "%s", cv_last_error());
    snprintf(now, sizeof now, "%s", v->state);
    snprintf(v->state, sizeof v->state, "%s", from);
    u = cvd_space_volume_update(d, v, now);
    if (u == 0)
        return;
    snprintf(why, sizeof why, "%s", cv_last_error());
    cvd_err("volume %s: putting it back to %s after \"%s\": %s", v->name,
            cvd_state_shown(from), first, why);
    cv_error(err, "%s (it shows %s until the daemon restarts, which puts it "
             "back: putting it back now failed: %s)", first,
             cvd_state_shown(now), why);
}

/* A delete needs its snapshots unserved too; a change of the head alone
 * (rollback, shrink) needs only the volume itself unserved. */
static int claim_in_use(struct cvd *d, const char *name, const char *state)
{
    return d->reg ? cvd_registry_in_use(d->reg, name,
                                        !strcmp(state, CVD_VOL_DELETING)) : 0;
}

/* Moves a ready volume to state, refusing while it is served.  The check
 * is repeated after the move: from then on the registry refuses to open
 * it, so no connection can slip in between check and change.  A pending
 * volume (no file, never served) can only be deleted.  *from gets the
 * state it left. */
int cvd_volume_claim(struct cvd *d, const char *name, const char *state,
                     const char *doing, struct cvd_volume_rec *v,
                     char *from)
{
    int r = cvd_volume_get(d, name, v);

    if (r == 0)
        r = cvd_node_check_placement(d, v);
    if (r < 0)
        return r;
    if (strcmp(v->state, CVD_VOL_READY) &&
        (strcmp(v->state, CVD_VOL_PENDING) || strcmp(state, CVD_VOL_DELETING)))
        return cvd_state_error(v);
    snprintf(from, sizeof v->state, "%s", v->state);
    if (claim_in_use(d, name, state))
        return cvd_in_use_error(d, name, doing);
    snprintf(v->state, sizeof v->state, "%s", state);
    /* A delete must work on a full disk: it is what frees space. */
    r = strcmp(state, CVD_VOL_DELETING) ?
        d->meta->ops->volume_update(d->meta, v, from) :
        cvd_space_volume_update(d, v, from);
    if (r < 0)
        return r;
    if (claim_in_use(d, name, state)) {
        r = cvd_in_use_error(d, name, doing);
        cvd_volume_put_back(d, v, from, r);
        return r;
    }
    return 0;
}

/* The commit point of a delete: the image moves to its ".deleting" name
 * (a pending volume has none).  Until then recovery puts the volume back;
 * from then on it finishes the delete. */
static int commit_delete(struct cvd_volume_rec *v, char *aside, size_t len)
{
    int r = cvd_aside_path(v->path, CVD_DELETING_SUFFIX, aside, len);

    if (r == 0)
        r = cvd_rename_file(v->path, aside, 1);
    if (r == -ENOENT && access(v->path, F_OK) < 0 && errno == ENOENT)
        r = 0;                  /* no file: nothing to free */
    return r < 0 ? cv_error_prefix(r, "volume %s", v->name) : 0;
}

int cvd_volume_delete(struct cvd *d, const char *name)
{
    struct cvd_volume_rec v, local;
    char from[sizeof v.state], aside[sizeof v.path + 16], clones[256];
    int r = cvd_check_name("volume", name);

    /* A clone reads through this volume's layers. */
    if (r == 0 && (r = cvd_volume_clones(d, name, NULL, clones,
                                         sizeof clones)) > 0)
        r = cv_error(-EBUSY, "volume %s: has clones (%s); flatten or delete "
                     "them first", name, clones);
    if (r == 0)
        r = cvd_job_check_idle(d, name);
    if (r == 0)
        r = cvd_volume_claim(d, name, CVD_VOL_DELETING, "deleting", &v, from);
    if (r < 0)
        return r;
    /* The other replicas' copies and the set first (a replica that
     * cannot be reached is logged there): after the commit below the
     * volume is gone, and a set must not outlive it. */
    r = cvd_repl_delete(d, name);
    if (r == 0) {
        local = v;
        cvd_volume_local_path(d, &v, local.path, sizeof local.path);
        r = commit_delete(&local, aside, sizeof aside);
    }
    if (r < 0) {
        cvd_volume_put_back(d, &v, from, r);
        return r;
    }
    r = cvd_store_remove(aside);
    if (r < 0 && r != -ENOENT)
        return cv_error(r, "volume %s: removing %s: %s (the next start "
                        "finishes deleting it)", name, aside, strerror(-r));
    r = cvd_space_volume_remove(d, name);
    if (r < 0)
        return cv_error_prefix(r, "volume %s: its image is deleted, the "
                               "record goes at the next start", name);
    cvd_job_forget(d, name);
    cvd_info("volume %s: deleted", name);
    /* Space was freed: keep some for the next full disk. */
    if (cvd_space_reserve(d) < 0)
        cvd_warn("%s", cv_last_error());
    return 0;
}
