/* A replica's life: OPEN (the layers the writer checks), REBUILD (a new
 * chain with the writer's layer ids at NAME.rebuilding, which the writes
 * go to from then on), COMMIT (it replaces the old one durably), DELETE,
 * STATUS, CLOSE.  Run under the entry's exclusive hold (STATUS: shared). */
#include "replica-internal.h"

#include "core/error.h"
#include "core/json-util.h"
#include "daemon.h"
#include "log.h"
#include "peer/peer.h"
#include "store/chain.h"
#include "volumes/volumes-util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void desc_of(struct repl_layer_desc *d,
                    const struct cv_chain_layer_info *li)
{
    d->id = li->id;
    d->created = li->created;
    snprintf(d->snapshot, sizeof d->snapshot, "%s", li->snapshot);
}

int replica_open(struct replica *e, const struct repl_req *q,
                 struct cvd_peer_reply *reply)
{
    struct repl_open_reply o = { 0 };
    struct cv_chain_layer_info *li = NULL;
    size_t n = 0;
    int r;

    (void)q;
    /* Opened anew: while no writer wrote here, this node may have been
     * the writer itself, changing the chain through another open of it
     * (the registry's), which the one held here would not know of. */
    replica_close_chain(e);
    if ((r = replica_open_chain(e)) < 0)
        return r;
    if ((r = cv_chain_layers(e->c, &li, &n)) < 0)
        return replica_fail(e, r, "its layers");
    o.epoch = e->epoch;
    o.data_offset = cv_chain_data_offset(e->c);
    o.raw_size = cv_chain_size(e->c);
    o.nlayers = (uint32_t)n;
    if (!(o.layers = calloc(n ? n : 1, sizeof *o.layers))) {
        free(li);
        return cv_error(-ENOMEM, "volume %s: out of memory", e->volume);
    }
    for (size_t i = 0; i < n; i++)
        desc_of(&o.layers[i], &li[i]);
    free(li);
    r = repl_open_reply_encode(&o, &reply->data, &reply->len);
    free(o.layers);
    return r;
}

/* ---- rebuild ---- */

/* A clone's parent, as REBUILD names it, must be here: this node's
 * replica of the parent volume (DATA-DIR/volumes/PARENT, a sibling of the
 * clone's chain, not one still being rebuilt) holding the snapshot.  Else
 * the clone's chain would read through nothing: -ENOENT, which makes the
 * replica Failed rather than a copy that reads wrong. */
static int parent_here(struct replica *e, const struct repl_req *q)
{
    char dir[PATH_MAX], *slash;
    struct cv_chain *c = NULL;
    int r;

    snprintf(dir, sizeof dir, "%s", e->path);
    if ((slash = strrchr(dir, '/')))
        slash[1] = '\0';
    if (strlen(dir) + strlen(q->parent) >= sizeof dir)
        return cv_error(-ENAMETOOLONG, "volume %s: replica %s: its "
                        "parent's path is too long", e->volume,
                        replica_node(e));
    strcat(dir, q->parent);
    if (access(dir, F_OK) != 0 ||
        (r = cv_chain_open(dir, q->parent_snapshot, CV_CHAIN_READONLY,
                           &c)) == -ENOENT)
        return cv_error(-ENOENT, "node %s: volume %s's parent %s@%s is not "
                        "here", replica_node(e), e->volume, q->parent,
                        q->parent_snapshot);
    cv_chain_close(c);
    return r < 0 ? replica_fail(e, r, "its parent %s@%s", q->parent,
                                q->parent_snapshot) : 0;
}

/* DATA-DIR/volumes, made on a node that held no volume yet. */
static int volumes_dir(struct replica *e)
{
    char dir[PATH_MAX], *slash;

    snprintf(dir, sizeof dir, "%s", e->path);
    if ((slash = strrchr(dir, '/')))
        *slash = '\0';
    if (mkdir(dir, 0700) == 0)
        return cvd_sync_dir_of(dir);
    if (errno != EEXIST)
        return cv_error(-errno, "%s: %s", dir, strerror(errno));
    return 0;
}

static int make_chain(struct replica *e, const struct repl_req *q,
                      const char *rb)
{
    struct cv_chain_new_layer l[REPL_MAX_LAYERS];
    struct cv_chain_parent parent = {
        q->parent, q->parent_snapshot,
        !!(q->parent_flags & REPL_PARENT_OWN_FORMAT) };
    size_t n = 0;
    int r;

    /* The writer sends its own layers only: a parent's (ids from
     * CV_CHAIN_PARENT_ID) are the parent volume's, held by its own
     * replica here. */
    for (uint32_t i = 0; i < q->nlayers; i++) {
        if (q->layers[i].id >= CV_CHAIN_PARENT_ID)
            return cv_error(-EINVAL, "volume %s: replica %s: REBUILD lists "
                            "layer %u, a parent's", e->volume,
                            replica_node(e), q->layers[i].id);
        l[n].id = q->layers[i].id;
        l[n].created = q->layers[i].created;
        l[n++].snapshot = q->layers[i].snapshot;
    }
    if ((r = volumes_dir(e)) < 0)
        return r;
    if (access(rb, F_OK) == 0 && (r = cv_chain_remove(rb)) < 0)
        return r;               /* a rebuild cut short restarts */
    if ((r = cv_chain_create_layers(rb, q->data_offset, q->raw_size, l, n,
                                    q->parent[0] ? &parent : NULL)) < 0)
        return r;
    return cvd_sync_dir_of(rb);
}

int replica_rebuild(struct replica *e, const struct repl_req *q)
{
    char rb[PATH_MAX + 16];
    int r;

    /* Said as it is (the writer's set keeps it as the reason). */
    if (q->parent[0] && (r = parent_here(e, q)) < 0)
        return r;
    replica_close_chain(e);
    snprintf(rb, sizeof rb, "%s" REPLICA_REBUILDING, e->path);
    if ((r = make_chain(e, q, rb)) < 0)
        return replica_fail(e, r, "rebuild");
    if ((r = cv_chain_open(rb, NULL, 0, &e->c)) < 0) {
        e->c = NULL;
        return replica_fail(e, r, "opening its rebuilding chain");
    }
    e->rebuilding = 1;
    cvd_info("volume %s: replica %s: rebuilding (%u layers, epoch "
             "%llu)", e->volume, replica_node(e), q->nlayers,
             (unsigned long long)q->epoch);
    return 0;
}

/* Every missed-NODE record in the state dir removed. */
static int drop_records(struct replica *e)
{
    struct dirent *de;
    DIR *dir;
    int r = 0;

    replica_close_records(e);
    if (!(dir = opendir(e->state)))
        return errno == ENOENT ? 0 : cv_error(-errno, "%s: %s", e->state,
                                              strerror(errno));
    while (r == 0 && (de = readdir(dir)))
        if (!strncmp(de->d_name, "missed-", 7))
            r = repl_missed_remove(e->state, de->d_name + 7);
    closedir(dir);
    return r;
}

static int sync_all(struct replica *e)
{
    struct cv_chain_layer_info *li = NULL;
    size_t n = 0;
    int r;

    if ((r = cv_chain_layers(e->c, &li, &n)) < 0)
        return r;
    for (size_t i = 0; r == 0 && i < n; i++)
        if (li[i].own)
            r = cv_chain_sync_layer(e->c, li[i].id);
    free(li);
    return r == 0 ? cv_chain_flush(e->c) : r;
}

/* NAME -> NAME.replaced, NAME.rebuilding -> NAME, each synced; then the
 * replaced one removed.  A cut between leaves NAME.rebuilding and no
 * NAME: the replica is still rebuilding (replica_open_chain). */
static int swap_in(struct replica *e, const char *rb)
{
    char old[PATH_MAX + 16];
    int had = access(e->path, F_OK) == 0, r = 0;

    snprintf(old, sizeof old, "%s" REPLICA_REPLACED, e->path);
    if (access(old, F_OK) == 0 && (r = cv_chain_remove(old)) < 0)
        return r;
    if (had && rename(e->path, old) != 0)
        return cv_error(-errno, "%s: %s", e->path, strerror(errno));
    if (had && (r = cvd_sync_dir_of(e->path)) < 0)
        return r;
    if (rename(rb, e->path) != 0)
        return cv_error(-errno, "%s: %s", rb, strerror(errno));
    if ((r = cvd_sync_dir_of(e->path)) < 0)
        return r;
    return had ? cv_chain_remove(old) : 0;
}

int replica_commit(struct replica *e, const struct repl_req *q)
{
    char rb[PATH_MAX + 16];
    int r;

    (void)q;
    if (!e->rebuilding)
        return cv_error(-EINVAL, "volume %s: replica %s: no rebuild "
                        "to commit", e->volume, replica_node(e));
    snprintf(rb, sizeof rb, "%s" REPLICA_REBUILDING, e->path);
    if ((r = sync_all(e)) < 0)
        return replica_fail(e, r, "commit");
    cv_chain_close(e->c);
    e->c = NULL;
    if ((r = swap_in(e, rb)) < 0 || (r = drop_records(e)) < 0)
        return replica_fail(e, r, "commit");
    e->rebuilding = 0;
    cvd_info("volume %s: replica %s: rebuilt", e->volume,
             replica_node(e));
    return replica_open_chain(e);
}

/* ---- delete, status, close ---- */

static int remove_state(struct replica *e)
{
    struct dirent *de;
    DIR *dir;
    int r = 0;

    if (!(dir = opendir(e->state)))
        return errno == ENOENT ? 0 : cv_error(-errno, "%s: %s", e->state,
                                              strerror(errno));
    while ((de = readdir(dir)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            unlinkat(dirfd(dir), de->d_name, 0) != 0 && !r)
            r = cv_error(-errno, "%s/%s: %s", e->state, de->d_name,
                         strerror(errno));
    closedir(dir);
    if (r == 0 && rmdir(e->state) != 0)
        r = cv_error(-errno, "%s: %s", e->state, strerror(errno));
    return r == 0 ? cvd_sync_dir_of(e->state) : r;
}

int replica_delete(struct replica *e, const struct repl_req *q)
{
    char rb[PATH_MAX + 16], old[PATH_MAX + 16];
    int r;

    (void)q;
    replica_close_chain(e);
    replica_close_records(e);
    snprintf(rb, sizeof rb, "%s" REPLICA_REBUILDING, e->path);
    snprintf(old, sizeof old, "%s" REPLICA_REPLACED, e->path);
    if ((r = cv_chain_remove(e->path)) < 0 || (r = cv_chain_remove(rb)) < 0 ||
        (r = cv_chain_remove(old)) < 0 || (r = remove_state(e)) < 0)
        return replica_fail(e, r, "delete");
    e->rebuilding = 0;
    e->epoch = 0;
    replica_unlink(e);
    cvd_info("volume %s: replica %s: deleted", e->volume,
             replica_node(e));
    return 0;
}

static int status_missed(struct replica *e, json_object *missed)
{
    struct repl_missed *m;
    struct dirent *de;
    DIR *dir;
    int r = 0;

    if (!(dir = opendir(e->state)))
        return errno == ENOENT ? 0 : cv_error(-errno, "%s: %s", e->state,
                                              strerror(errno));
    while (r == 0 && (de = readdir(dir))) {
        const char *node = de->d_name + 7;

        if (strncmp(de->d_name, "missed-", 7) ||
            (!cvd_name_valid(node) && strcmp(node, REPL_ACTIVE_NODE)))
            continue;
        if ((r = replica_record(e, node, &m)) == 0)
            r = cv_json_add(missed, node, json_object_new_int64(
                                (int64_t)repl_missed_bytes(m)));
    }
    closedir(dir);
    return r;
}

static json_object *status_json(struct replica *e)
{
    json_object *o = json_object_new_object(), *layers, *missed, *l;
    struct cv_chain_layer_info *li = NULL;
    size_t n = 0;
    int r;

    if (!o)
        return NULL;
    r = cv_json_add(o, "epoch", json_object_new_int64((int64_t)e->epoch));
    r |= cv_json_add(o, "layers", layers = json_object_new_array());
    r |= cv_json_add(o, "missed", missed = json_object_new_object());
    r |= cv_json_add(o, "rebuilding", json_object_new_boolean(e->rebuilding));
    if (r == 0 && (r = cv_chain_layers(e->c, &li, &n)) < 0)
        replica_fail(e, r, "its layers");
    for (size_t i = 0; r == 0 && i < n; i++) {
        r = cv_json_append(layers, l = json_object_new_object());
        if (r == 0) {
            r |= cv_json_add(l, "id", json_object_new_int64(li[i].id));
            r |= cv_json_add(l, "snapshot",
                             json_object_new_string(li[i].snapshot));
            r |= cv_json_add(l, "allocated",
                             json_object_new_int64((int64_t)li[i].allocated));
        }
    }
    free(li);
    if (r == 0)
        r = status_missed(e, missed);
    if (r < 0) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

int replica_status(struct replica *e, const struct repl_req *q,
                   struct cvd_peer_reply *reply)
{
    json_object *o = status_json(e);
    const char *text;

    (void)q;
    if (!o)
        return replica_fail(e, -ENOMEM, "status");
    text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    reply->len = strlen(text);
    reply->data = strdup(text);
    json_object_put(o);
    if (!reply->data)
        return cv_error(-ENOMEM, "volume %s: status: out of memory",
                        e->volume);
    return 0;
}

int replica_close(struct replica *e, const struct repl_req *q)
{
    int r;

    (void)q;
    r = replica_close_chain(e);
    replica_close_records(e);
    return r < 0 ? replica_fail(e, r, "close") : 0;
}
