/* A replica's rebuild (chain.h, "Rebuilding a replica"): a new chain with
 * the writer's layer ids, and reading what one own layer holds, so a
 * rebuild or a check can copy layers one by one. */
#include "chain-internal.h"
#include "core/error.h"
#include "core/fd-io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int check_layers(const char *dir, uint64_t data_offset,
                        uint64_t raw_size,
                        const struct cv_chain_new_layer *l, size_t n)
{
    size_t i, j;

    if (data_offset % CV_CHAIN_BLOCK || raw_size < data_offset)
        return cv_error(-EINVAL, "%s: data offset %llu must be a multiple of "
                        "%u within the size %llu", dir,
                        (unsigned long long)data_offset, CV_CHAIN_BLOCK,
                        (unsigned long long)raw_size);
    if (n == 0 || n > CV_CHAIN_MAX_LAYERS)
        return cv_error(-EINVAL, "%s: %zu layers: 1 to %d", dir, n,
                        CV_CHAIN_MAX_LAYERS);
    for (i = 0; i < n; i++) {
        int head = i == n - 1;

        if (l[i].id == 0 || l[i].id >= CV_CHAIN_PARENT_ID ||
            (i > 0 && l[i].id <= l[i - 1].id))
            return cv_error(-EINVAL, "%s: layer id %u: ids must increase, "
                            "from 1 to %u", dir, l[i].id,
                            CV_CHAIN_PARENT_ID - 1);
        if (head ? l[i].snapshot[0] != '\0' : !chain_name_ok(l[i].snapshot))
            return cv_error(-EINVAL, "%s: layer %u: \"%s\" is not %s", dir,
                            l[i].id, l[i].snapshot, head ?
                            "the head's (\"\")" : "a valid snapshot name");
        for (j = 0; j < i && !head; j++)
            if (!strcmp(l[j].snapshot, l[i].snapshot))
                return cv_error(-EINVAL, "%s: snapshot \"%s\" twice", dir,
                                l[i].snapshot);
    }
    return 0;
}

static int make_sparse(int dirfd, const char *dir, const char *name,
                       uint64_t size)
{
    int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int r = 0;

    if (fd < 0)
        return cv_error(-errno, "%s: creating %s: %s", dir, name,
                        strerror(errno));
    if (ftruncate(fd, (off_t)size) != 0 || fsync(fd) != 0)
        r = cv_error(-errno, "%s: %s: %s", dir, name, strerror(errno));
    close(fd);
    return r;
}

static void fill_manifest(struct chain_manifest *m, uint64_t data_offset,
                          const struct cv_chain_new_layer *l, size_t n,
                          const struct cv_chain_parent *parent)
{
    m->data_offset = data_offset;
    m->nlayers = n;
    /* What the writer's chain would give its next layer: its head is its
     * newest, and every change of shape takes the next number. */
    m->next_id = l[n - 1].id + 1;
    for (size_t i = 0; i < n; i++) {
        m->layers[i].id = l[i].id;
        m->layers[i].created = l[i].created;
        snprintf(m->layers[i].snapshot, sizeof m->layers[i].snapshot, "%s",
                 l[i].snapshot);
    }
    if (parent) {
        m->has_parent = 1;
        snprintf(m->parent_volume, sizeof m->parent_volume, "%s",
                 parent->volume);
        snprintf(m->parent_snapshot, sizeof m->parent_snapshot, "%s",
                 parent->snapshot);
        m->parent_own_format = !!parent->own_format;
    }
}

static int create_files(const char *dir, uint64_t raw_size,
                        const struct chain_manifest *m)
{
    char layer[CHAIN_LAYER_NAME_MAX];
    int fd, r;

    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return cv_error(-errno, "%s: %s", dir, strerror(errno));
    r = make_sparse(fd, dir, CHAIN_HEADER, m->data_offset);
    for (size_t i = 0; r == 0 && i < m->nlayers; i++) {
        snprintf(layer, sizeof layer, CHAIN_LAYER_FMT, m->layers[i].id);
        r = make_sparse(fd, dir, layer, raw_size);
    }
    if (r == 0)
        r = chain_manifest_write(fd, dir, m);   /* syncs dir too */
    close(fd);
    return r;
}

int cv_chain_create_layers(const char *dir, uint64_t data_offset,
                           uint64_t raw_size,
                           const struct cv_chain_new_layer *layers, size_t n,
                           const struct cv_chain_parent *parent)
{
    struct chain_manifest *m;
    int r;

    if ((r = check_layers(dir, data_offset, raw_size, layers, n)) < 0)
        return r;
    if (parent && (!chain_name_ok(parent->volume) ||
                   !chain_name_ok(parent->snapshot)))
        return cv_error(-EINVAL, "%s: parent \"%s@%s\" is not a valid name",
                        dir, parent->volume, parent->snapshot);
    if (!(m = calloc(1, sizeof *m)))
        return cv_error(-ENOMEM, "%s: out of memory", dir);
    fill_manifest(m, data_offset, layers, n, parent);
    if (mkdir(dir, 0700) != 0) {
        r = cv_error(-errno, "%s: %s", dir, strerror(errno));
    } else if ((r = create_files(dir, raw_size, m)) < 0) {
        char msg[512];

        /* The cause (a full disk: ENOSPC), not what the cleanup says. */
        snprintf(msg, sizeof msg, "%s", cv_last_error());
        cv_chain_remove(dir);
        r = cv_error(r, "%s", msg);
    }
    free(m);
    return r;
}

/* Under the shared lock: l's held runs of [blk, blk + nblk) read into
 * buf (which starts at blk), their bits set. */
static int read_held(struct cv_chain *c, struct chain_layer *l, uint8_t *buf,
                     uint64_t blk, uint64_t nblk, uint8_t *held)
{
    uint64_t i = 0, run, end = nblk;
    int r;

    /* Past the layer's end it holds nothing. */
    if (blk >= l->size / CV_CHAIN_BLOCK)
        return 0;
    if (end > l->size / CV_CHAIN_BLOCK - blk)
        end = l->size / CV_CHAIN_BLOCK - blk;
    while (i < end) {
        run = chain_map_run(&l->map, blk + i, end - i, 0);
        i += run;
        if (i >= end)
            break;
        run = chain_map_run(&l->map, blk + i, end - i, 1);
        r = cv_pread_zeros(l->fd, buf + i * CV_CHAIN_BLOCK,
                           (size_t)(run * CV_CHAIN_BLOCK),
                           (blk + i) * CV_CHAIN_BLOCK);
        if (r < 0)
            return cv_error(r, "%s: layer %u: reading: %s", c->dir, l->id,
                            strerror(-r));
        for (uint64_t k = i; k < i + run; k++)
            held[k / 8] |= (uint8_t)(1u << (k % 8));
        i += run;
    }
    return 0;
}

int cv_chain_read_layer(struct cv_chain *c, unsigned id, void *buf,
                        size_t len, uint64_t off, uint8_t *held)
{
    uint64_t nblk = len / CV_CHAIN_BLOCK;
    struct chain_layer *l;
    int i, r = 0;

    if (off % CV_CHAIN_BLOCK || len % CV_CHAIN_BLOCK)
        return cv_error(-EINVAL, "%s: reading layer %u: %zu bytes at %llu: "
                        "not whole blocks", c->dir, id, len,
                        (unsigned long long)off);
    memset(buf, 0, len);
    memset(held, 0, (size_t)((nblk + 7) / 8));
    chain_rdlock(c);
    i = id == CV_CHAIN_TOP ? (int)c->nlayers - 1 : chain_index(c, id);
    if (i < 0 || !c->layers[i]->own)
        r = cv_error(-ENOENT, "%s: no layer %u of its own", c->dir, id);
    else if (c->layers[i]->store)
        r = cv_error(-ENOTSUP, "%s: a wrapped store has no layers", c->dir);
    else if (off < c->data_offset || off + len < off)
        r = cv_error(-ERANGE, "%s: reading layer %u at %llu: outside the "
                     "data area", c->dir, id, (unsigned long long)off);
    if (r == 0) {
        l = c->layers[i];
        r = read_held(c, l, buf, off / CV_CHAIN_BLOCK, nblk, held);
    }
    chain_unlock(c);
    return r;
}
