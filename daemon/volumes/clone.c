/* Clones (RBD layering, without its sharp edges) and flatten.
 *
 * A clone is a chain whose bottom reads through a parent's snapshot.  It
 * inherits the parent's format (its header is a copy of the parent's:
 * same volume key, same secret) or gets its own LUKS format and key, its
 * header made to end exactly at the parent's data offset, so the clone
 * keeps the parent's whole effective size and offsets.  Flatten copies
 * every parent block into the clone's oldest own layer (re-encrypted when
 * the formats differ) and then drops the parent. */
#include "snapshots.h"
#include "classes.h"
#include "cluster/cluster.h"
#include "daemon.h"
#include "core/error.h"
#include "core/secmem.h"
#include "export/export.h"
#include "image/volume.h"
#include "jobs.h"
#include "log.h"
#include "luks/luks.h"
#include "repl/repl.h"
#include "store/backend.h"
#include "store/chain.h"
#include "volumes.h"
#include "volumes-util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The clone's own format, as a volume request (its class's, or the
 * request's type and cipher, else the parent's). */
static int own_request(struct cvd *d, const struct cvd_clone_req *in,
                       const struct cvd_volume_rec *p, uint64_t size,
                       struct cvd_volume_req *out, char *secret)
{
    struct cvd_volume_req req = {
        .name = in->name, .size = size, .secret = in->secret,
        .class_name = in->class_name,
        .luks_version = in->luks_version ? in->luks_version :
                        !strcmp(p->type, "luks1") ? 1 : 2,
        .aes_bits = in->aes_bits ? in->aes_bits : p->key_bits / 2,
    };
    int r = cvd_class_volume_req(d, &req, out, secret);

    if (r == 0 && !out->secret)
        r = cv_error(-EINVAL, "volume %s: a clone with its own format needs "
                     "a secret (--secret) or a class that names one",
                     in->name);
    if (r == 0 && out->luks_version != 1 && out->luks_version != 2)
        r = cv_error(-EINVAL, "volume %s: type must be luks2 or luks1",
                     in->name);
    if (r == 0 && out->aes_bits != 128 && out->aes_bits != 256)
        r = cv_error(-EINVAL, "volume %s: cipher must be aes-256 or aes-128",
                     in->name);
    return r;
}

/* The parent's record (LUKS, with a chain) and its snapshot's size. */
static int parent_of(struct cvd *d, const char *full, char *pvol, char *psnap,
                     struct cvd_volume_rec *p, uint64_t *size)
{
    struct cvd_export *e = NULL;
    uint64_t raw;
    int r = cvd_split_snapshot(full, pvol, psnap);

    if (r == 0)
        r = cvd_volume_get(d, pvol, p);
    if (r == 0 && !strcmp(p->type, "plaintext"))
        r = cv_error(-EINVAL, "volume %s: a plaintext volume has no "
                     "snapshots to clone", pvol);
    if (r == 0 && !cvd_state_served(p->state))
        r = cvd_state_error(p);
    if (r == 0)
        r = cvd_store_get(d, full, 0, &e);
    if (r == -ENOENT && p->name[0])
        r = cv_error(-ENOENT, "volume %s: no snapshot \"%s\"", pvol, psnap);
    if (r < 0)
        return r;
    raw = cv_chain_size(cvd_export_chain(e));
    cvd_export_put_store(e);
    *size = raw > p->data_offset ?
            (raw - p->data_offset) / p->sector_size * p->sector_size : 0;
    return 0;
}

/* The inherited header: the parent's bytes [0, data offset), as they are
 * now (a rekey of the parent since the snapshot is in them). */
static int copy_header(struct cvd *d, const char *pvol, struct cv_chain *c,
                       uint64_t len)
{
    struct cvd_export *e = NULL;
    char *buf = malloc(len ? len : 1);
    int r = buf ? cvd_store_get(d, pvol, 0, &e) : -ENOMEM;

    if (r == -ENOMEM)
        return cv_error(r, "volume %s: out of memory", pvol);
    pthread_mutex_lock(&d->header_lock);
    if (r == 0)
        r = cv_backend_pread(cvd_store_backend(e), buf, len, 0);
    pthread_mutex_unlock(&d->header_lock);
    if (r == 0)
        r = cv_backend_pwrite(cv_chain_backend(c), buf, len, 0, 0);
    cvd_export_put_store(e);
    free(buf);
    return r;
}

/* The own header, made to end at the parent's data offset: a LUKS2 one
 * with 4096-byte sectors when the size allows, else 512. */
static int format_own(struct cvd *d, const struct cvd_volume_req *req,
                      const struct cv_secret *pass, struct cvd_volume_rec *v,
                      struct cv_chain *c)
{
    struct cv_format_params fp = { .luks_version = req->luks_version,
                                   .key_bits = req->aes_bits,
                                   .data_offset = v->data_offset,
                                   .new_store = 1 };
    struct cv_luks *l = NULL;
    struct cv_luks_info info;
    int r;

    fp.sector_size = req->luks_version == 2 && v->size % 4096 == 0 ? 4096 :
                     512;
    cvd_volume_pbkdf(d, req, &fp.pbkdf);
    r = cv_luks_format_open(cv_chain_backend(c), &fp, pass->data, pass->len,
                            &l);
    if (r == 0 && v->kek_gen)
        r = cvd_volume_enroll_kek(d, l, pass, v);
    if (r == 0)
        r = cv_luks_info(l, &info);
    if (r == 0 && info.data_offset != v->data_offset)
        r = cv_error(-EINVAL, "volume %s: its header ends at %llu bytes, not "
                     "at the parent's data offset (%llu)", v->name,
                     (unsigned long long)info.data_offset,
                     (unsigned long long)v->data_offset);
    if (r == 0) {
        snprintf(v->uuid, sizeof v->uuid, "%s", info.uuid);
        snprintf(v->cipher, sizeof v->cipher, "%s", info.cipher);
        snprintf(v->type, sizeof v->type, "luks%d", info.luks_version);
        v->key_bits = info.key_bits;
        v->sector_size = info.sector_size;
    }
    cv_luks_free(l);
    return r;
}

/* Makes the clone's chain under its ".creating" name and puts it in
 * place; v (state creating) is the clone's record. */
static int make_clone(struct cvd *d, struct cvd_volume_rec *v,
                      const char *pvol, const char *psnap, int own,
                      const struct cvd_volume_req *req,
                      const struct cv_secret *pass)
{
    struct cv_chain_parent parent = { pvol, psnap, own };
    struct cv_chain *c = NULL;
    char final[sizeof v->path];
    int r, made = 0;

    snprintf(final, sizeof final, "%s", v->path);
    r = cvd_aside_path(final, CVD_CREATING_SUFFIX, v->path, sizeof v->path);
    if (r == 0)
        r = cvd_store_make(d, v, v->data_offset, v->size, &parent);
    made = r == 0;
    if (r == 0)
        r = cv_chain_open(v->path, NULL, 0, &c);
    if (r == 0)
        r = own ? format_own(d, req, pass, v, c) :
                  copy_header(d, pvol, c, v->data_offset);
    if (r == 0)
        r = cv_chain_flush(c);
    cv_chain_close(c);
    if (r == 0)
        r = cvd_rename_file(v->path, final, 1);
    if (r < 0 && made)
        cvd_store_remove(v->path);
    r = cvd_store_hide_path(r, v->path);
    snprintf(v->path, sizeof v->path, "%s", final);
    return r < 0 ? cv_error_prefix(cvd_store_hide_path(r, v->path),
                                   "volume %s", v->name) : 0;
}

/* ---- Replicas ---------------------------------------------------------
 *
 * A clone's chain reads through its parent's snapshot in the sibling
 * chain directory, so each of its replicas must be on a node that holds
 * the parent's layers: an InSync replica of the parent (repl.h,
 * cvd_repl_parent_nodes).  The clone is made here, so this node must be
 * one; the others get theirs by the repair loop's rebuild (REPL_REBUILD
 * names the parent). */

struct clone_reps {
    unsigned n, min;
    int parent_set;             /* the parent has a replica set */
};

/* How many: asked, else the class's (a clone of a class), else the
 * parent's set's. */
static void reps_wanted(struct cvd *d, const struct cvd_clone_req *in,
                        const char *pvol, const struct cvd_volume_req *own,
                        struct clone_reps *c)
{
    struct cvd_replica_set s;

    c->n = in->replicas;
    c->min = in->min_replicas;
    c->parent_set = d->meta->clustered &&
                    d->meta->ops->replicas_get(d->meta, pvol, &s) == 0;
    cv_clear_error();
    if (!c->n && own && own->class_name)
        c->n = own->replicas;
    if (!c->n && c->parent_set) {
        c->n = s.want ? s.want : s.n;
        if (!c->min && s.min <= c->n)
            c->min = s.min;
    }
    if (!c->n)
        c->n = 1;
    if (!c->min && c->n > 1)
        c->min = c->n - 1;
}

static int self_in(struct cvd *d, const char (*nodes)[CVD_NAME_MAX + 1],
                   unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (!strcmp(nodes[i], d->cfg.node_name))
            return 1;
    return 0;
}

/* A clone of a replicated parent is made here only if this node holds
 * an InSync replica of the parent (its layers, up to date). */
static int parent_here(struct cvd *d, const struct cvd_clone_req *in)
{
    char within[CVD_MAX_REPLICAS][CVD_NAME_MAX + 1];
    char pvol[CVD_NAME_MAX + 1], psnap[CVD_NAME_MAX + 1];
    struct cvd_replica_set s;
    unsigned nw = 0;
    int r = cvd_split_snapshot(in->parent, pvol, psnap);

    if (r < 0 || !d->meta->clustered ||
        d->meta->ops->replicas_get(d->meta, pvol, &s) < 0) {
        cv_clear_error();
        return 0;               /* parent_of says what is wrong, if any */
    }
    if ((r = cvd_repl_parent_nodes(d, pvol, within, &nw)) < 0)
        return cv_error_prefix(r, "volume %s", in->name);
    if (self_in(d, (const char (*)[CVD_NAME_MAX + 1])within, nw))
        return 0;
    return cv_error(-EREMOTE, "volume %s: node %s holds no in-sync replica "
                    "of its parent %s (a clone is made where its parent's "
                    "layers are: clone it on %s%s)", in->name,
                    d->cfg.node_name, pvol, nw ? within[0] : "a node that "
                    "holds one", nw > 1 ? " or another of them" : "");
}

/* The clone's replica count, checked against where its parent is. */
static int clone_replicas(struct cvd *d, const struct cvd_clone_req *in,
                          const char *pvol, const struct cvd_volume_req *own,
                          struct clone_reps *c)
{
    char within[CVD_MAX_REPLICAS][CVD_NAME_MAX + 1];
    char placed[CVD_MAX_REPLICAS][CVD_NAME_MAX + 1];
    unsigned nw = 0;
    int r;

    reps_wanted(d, in, pvol, own, c);
    if (c->n > CVD_MAX_REPLICAS || (c->n > 1 && !d->node))
        return cv_error(-EINVAL, "volume %s: %u replicas (%s)", in->name,
                        c->n, d->node ? "at most 5" : "replication needs a "
                        "cluster");
    if (c->min > c->n)
        return cv_error(-EINVAL, "volume %s: minReplicas %u is more than its "
                        "%u replicas", in->name, c->min, c->n);
    if (c->n < 2)
        return 0;
    if ((r = cvd_repl_parent_nodes(d, pvol, within, &nw)) < 0)
        return cv_error_prefix(r, "volume %s", in->name);
    r = cvd_node_place_replicas_within(d, c->n, NULL, 0,
                                       (const char (*)[CVD_NAME_MAX + 1])
                                       within, nw, placed);
    /* 400: the request asks for more than the parent's nodes give. */
    if (r < 0)
        return cv_error(-EINVAL, "volume %s: %u replicas, but %u node%s "
                        "hold%s an in-sync replica of its parent %s: a "
                        "clone's replicas go only where its parent's layers "
                        "are", in->name, c->n, nw, nw == 1 ? "" : "s",
                        nw == 1 ? "s" : "", pvol);
    return 0;
}

static void clone_record(struct cvd *d, const struct cvd_clone_req *in,
                         const struct cvd_volume_rec *p, uint64_t size,
                         struct cvd_volume_rec *v)
{
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", in->name);
    v->size = size;
    snprintf(v->type, sizeof v->type, "%s", p->type);
    snprintf(v->cipher, sizeof v->cipher, "%s", p->cipher);
    v->key_bits = p->key_bits;
    v->sector_size = p->sector_size;
    v->data_offset = p->data_offset;
    /* Inherited: the same header, so the same UUID (a KEK token's
     * associated data), secret and KEK generation. */
    snprintf(v->uuid, sizeof v->uuid, "%s", p->uuid);
    snprintf(v->secret, sizeof v->secret, "%s", p->secret);
    v->kek_gen = p->kek_gen;
    snprintf(v->parent, sizeof v->parent, "%s", in->parent);
    cvd_volume_path(d, in->name, v->path, sizeof v->path);
    snprintf(v->state, sizeof v->state, CVD_VOL_CREATING);
    v->created = (int64_t)time(NULL);
}

int cvd_volume_clone(struct cvd *d, const struct cvd_clone_req *in,
                     struct cvd_volume_rec *out)
{
    char pvol[CVD_NAME_MAX + 1] = "", psnap[CVD_NAME_MAX + 1];
    char secret[CVD_NAME_MAX + 1], first[CVD_ERROR_MAX];
    struct cvd_volume_req req = { 0 };
    struct cv_secret pass = { 0 };
    struct cvd_volume_rec p = { 0 }, v;
    struct clone_reps reps = { 0 };
    int own = in->secret || in->class_name, recorded = 0, made = 0;
    uint64_t size = 0;
    uint32_t kek_gen = 0;
    int r = cvd_check_name("volume", in->name);

    if (r == 0)
        r = parent_here(d, in);
    if (r == 0)
        r = parent_of(d, in->parent, pvol, psnap, &p, &size);
    if (r == 0 && own)
        r = own_request(d, in, &p, size, &req, secret);
    if (r == 0 && own)
        r = cvd_volume_cluster_check(d, &req, &kek_gen);
    if (r == 0)
        r = clone_replicas(d, in, pvol, own ? &req : NULL, &reps);
    if (r == 0 && own)
        r = cvd_volume_passphrase(d, &req, kek_gen, &pass, NULL);
    if (r < 0)
        goto out;
    clone_record(d, in, &p, size, &v);
    if (own) {
        /* The type is fixed when recorded (the format's other fields are
         * the record's mutable ones, set once it is made). */
        snprintf(v.type, sizeof v.type, "luks%d", req.luks_version);
        snprintf(v.secret, sizeof v.secret, "%s", req.secret);
        snprintf(v.class_name, sizeof v.class_name, "%s",
                 req.class_name ? req.class_name : "");
        v.kek_gen = kek_gen;
    }
    cvd_node_place(d, &v);
    r = d->meta->ops->volume_add(d->meta, &v, NULL);
    if (r < 0)
        goto out;
    recorded = 1;
    r = make_clone(d, &v, pvol, psnap, own, &req, &pass);
    made = r == 0;
    if (r == 0) {
        snprintf(v.state, sizeof v.state, CVD_VOL_READY);
        r = d->meta->ops->volume_update(d->meta, &v, CVD_VOL_CREATING);
    }
    /* This node InSync, the others Rebuilding: the repair loop rebuilds
     * them (the clone's own layers; the parent's are there). */
    if (r == 0 && reps.n > 1)
        r = cvd_repl_create_set(d, v.name, reps.n, reps.min);
out:
    snprintf(first, sizeof first, "%s", cv_last_error());
    if (r < 0 && made) {
        cvd_undo(first, cvd_repl_delete(d, in->name));
        cvd_undo(first, cvd_store_remove(v.path));
    }
    if (r < 0 && recorded)
        cvd_undo(first, cvd_space_volume_remove(d, in->name));
    if (r == 0)
        cvd_info("volume %s: cloned from %s (%s; %u replica%s)", v.name,
                 in->parent, own ? "its own format and key"
                                 : "the parent's format", reps.n,
                 reps.n == 1 ? "" : "s");
    if (r == 0 && out)
        *out = v;
    cv_secret_free(&pass);
    return r;
}

/* --- Flatten ----------------------------------------------------------- */

static int flatten_progress(void *arg, uint64_t done)
{
    return cvd_job_progress(arg, done);
}

/* The parents' layers of c: *ids malloc'ed. */
static int parent_layers(struct cv_chain *c, unsigned **ids, size_t *n)
{
    struct cv_chain_layer_info *l = NULL;
    size_t nl = 0, i;
    int r = cv_chain_layers(c, &l, &nl);

    *n = 0;
    *ids = r == 0 ? calloc(nl ? nl : 1, sizeof **ids) : NULL;
    if (r == 0 && !*ids)
        r = cv_error(-ENOMEM, "%s: out of memory", cv_chain_name(c));
    for (i = 0; r == 0 && i < nl; i++)
        if (!l[i].own)
            (*ids)[(*n)++] = l[i].id;
    free(l);
    return r;
}

static int clear_parent(struct cvd *d, const char *name)
{
    struct cvd_volume_rec v;
    int r = cvd_volume_get(d, name, &v);

    if (r == 0 && v.parent[0]) {
        v.parent[0] = '\0';
        r = d->meta->ops->volume_update(d->meta, &v, v.state);
    }
    return r;
}

static int flatten_run(struct cvd *d, struct cvd_job *job, void *arg)
{
    const char *name = arg;
    struct cvd_export *e = NULL;
    struct cv_volume *vol;
    struct cv_chain *c;
    unsigned *ids = NULL;
    size_t n = 0;
    int r = cvd_store_get(d, name, 1, &e);

    if (r < 0)
        return r;
    c = cvd_export_chain(e);
    vol = cvd_export_volume(e);
    cvd_export_shape_lock(e);
    r = parent_layers(c, &ids, &n);
    if (r == 0 && n)
        r = cv_volume_fill_layer(vol, cv_chain_bottom(c), ids, n, 0,
                                 cv_volume_size(vol), flatten_progress, job);
    if (r == 0)
        r = cv_chain_sync_layer(c, cv_chain_bottom(c));
    if (r == 0 && n)
        r = cv_chain_drop_parent(c);
    cvd_export_shape_unlock(e);
    if (r < 0)
        cv_error_prefix(cvd_store_hide_path(r, cv_chain_name(c)),
                        "volume %s: flatten", name);
    cvd_export_put_store(e);
    free(ids);
    /* The chain is the truth; a cut before this is mended at the next
     * start (cvd_snapshots_resume). */
    if (r == 0)
        r = clear_parent(d, name);
    return r;
}

int cvd_volume_flatten(struct cvd *d, const char *name)
{
    struct cvd_volume_rec v;
    char *arg;
    int r = cvd_volume_get(d, name, &v);

    if (r == 0 && !v.parent[0])
        r = cv_error(-EINVAL, "volume %s: has no parent (not a clone, or "
                     "already flattened)", name);
    if (r == 0 && !cvd_state_served(v.state))
        r = cvd_state_error(&v);
    if (r < 0)
        return r;
    arg = strdup(name);
    if (!arg)
        return cv_error(-ENOMEM, "volume %s: out of memory", name);
    r = cvd_job_start(d, name, CVD_JOB_FLATTEN, v.parent, v.size,
                      flatten_run, arg, free);
    if (r == 0)
        cvd_info("volume %s: flattening (copying the blocks of %s)", name,
                 v.parent);
    return r;
}

int cvd_volume_needs_secrets(struct cvd *d, const struct cvd_volume_rec *v,
                             char *buf, size_t len)
{
    struct cvd_export *e = NULL;
    struct cvd_volume_rec a;
    size_t used = 0;
    unsigned n, i;
    int r = cvd_store_get_view(d, v->name, &e);

    if (len)
        buf[0] = '\0';
    if (r < 0)
        return r;
    n = cv_chain_formats(cvd_export_chain(e));
    for (i = 0; r == 0 && i < n; i++) {
        const char *owner = i ? cv_chain_format_volume(cvd_export_chain(e), i)
                              : v->name;
        int w;

        r = d->meta->ops->volume_get(d->meta, owner, &a);
        if (r == 0 && used < len) {
            w = snprintf(buf + used, len - used, "%s%s", used ? "," : "",
                         a.secret[0] ? a.secret : "(cluster KEK)");
            used += w < 0 ? 0 : (size_t)w;
        }
    }
    cvd_export_put_store(e);
    return r;
}
