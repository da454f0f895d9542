/* Collection: under the target's exclusive lock, every block no manifest
 * names goes (a deleted backup's, a failed or killed one's), and so do the
 * temporary files and empty manifests a cut left.  A manifest that cannot
 * be read stops it before anything is removed: its blocks may be the only
 * copy of a backup someone still wants. */
#include "target-internal.h"

#include "core/error.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct named {
    unsigned char (*sha)[32];
    size_t n, cap;
};

static int hexval(char c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

static void hex_to_bin(const char *hex, unsigned char out[32])
{
    int i;

    for (i = 0; i < 32; i++)
        out[i] = (unsigned char)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
}

static int cmp_sha(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static int add_named(struct cvd_target *t, struct named *nm,
                     const struct cvd_manifest *m)
{
    size_t i;

    if (nm->cap - nm->n < m->nblocks) {
        size_t cap = nm->n + m->nblocks + nm->cap;
        void *p = realloc(nm->sha, cap * 32);

        if (!p)
            return cv_error(-ENOMEM, "backup target %s: collect: out of "
                            "memory", t->dir);
        nm->sha = p;
        nm->cap = cap;
    }
    for (i = 0; i < m->nblocks; i++)
        hex_to_bin(m->blocks[i].sha256, nm->sha[nm->n++]);
    return 0;
}

struct collect {
    struct cvd_target *t;
    struct named named;
    uint64_t freed;
};

static int remove_file(struct collect *c, const char *path, off_t size)
{
    if (unlink(path) != 0 && errno != ENOENT)
        return cvd_target_fail(c->t, errno, path, "unlink");
    c->freed += (uint64_t)size;
    return 0;
}

/* backups/NAME: a manifest's blocks are named; an empty manifest (an id
 * taken by a daemon that died before writing it), a MAC without its
 * manifest and a temporary file are removed. */
static int backups_entry(struct collect *c, const char *dir, const char *name)
{
    char path[PATH_MAX], id[CVD_BACKUP_ID_MAX + 1], other[PATH_MAX];
    size_t n = strlen(name);
    struct cvd_manifest m;
    struct stat st;
    int r;

    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path ||
        lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    if (!strncmp(name, CVD_TARGET_TMP, strlen(CVD_TARGET_TMP)))
        return remove_file(c, path, st.st_size);
    if (n != 24 || (strcmp(name + 19, ".json") && strcmp(name + 19, ".mac")))
        return 0;
    memcpy(id, name, 19);
    id[19] = '\0';
    if (!cvd_target_id_ok(id))
        return 0;
    if (!strcmp(name + 19, ".mac")) {
        if (snprintf(other, sizeof other, "%s/%s.json", dir, id) >=
            (int)sizeof other)
            return 0;
        return access(other, F_OK) != 0 && errno == ENOENT ?
               remove_file(c, path, st.st_size) : 0;
    }
    if (st.st_size == 0)
        return remove_file(c, path, 0);
    r = cvd_manifest_read(c->t, id, NULL, &m);
    if (r < 0)
        return cv_error_prefix(r, "backup target %s: no block removed, "
                               "since one manifest cannot be read (delete "
                               "that backup, or mend it): ", c->t->dir);
    r = add_named(c->t, &c->named, &m);
    cvd_manifest_free(&m);
    return r;
}

static int each_backup(struct collect *c)
{
    char dir[PATH_MAX];
    struct dirent *e;
    DIR *d;
    int r = cvd_target_path(c->t, dir, sizeof dir, "backups");

    if (r < 0)
        return r;
    d = opendir(dir);
    if (!d)
        return cvd_target_fail(c->t, errno, "backups", "opendir");
    while (r == 0 && (e = readdir(d)))
        r = backups_entry(c, dir, e->d_name);
    closedir(d);
    return r;
}

static int block_entry(const char *path, const char *name,
                       const struct stat *st, void *arg)
{
    struct collect *c = arg;
    unsigned char sha[32];

    if (!S_ISREG(st->st_mode))
        return 0;
    if (!strncmp(name, CVD_TARGET_TMP, strlen(CVD_TARGET_TMP)))
        return remove_file(c, path, st->st_size);
    if (!cvd_target_hex_ok(name))
        return 0;       /* not ours to judge */
    hex_to_bin(name, sha);
    if (c->named.n && bsearch(sha, c->named.sha, c->named.n, 32, cmp_sha))
        return 0;
    return remove_file(c, path, st->st_size);
}

/* volumes/VOLUME/ID whose manifest is gone (a delete cut between the two),
 * and temporary files at the top (a marker being made). */
static int index_entries(struct collect *c)
{
    char dir[PATH_MAX], sub[PATH_MAX], path[PATH_MAX], json[PATH_MAX];
    struct dirent *e, *f;
    DIR *d, *s;
    int r = cvd_target_path(c->t, dir, sizeof dir, "volumes");

    if (r < 0 || !(d = opendir(dir)))
        return r;
    while (r == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.' ||
            snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name) >= (int)sizeof sub ||
            !(s = opendir(sub)))
            continue;
        while (r == 0 && (f = readdir(s))) {
            if (!cvd_target_id_ok(f->d_name) ||
                cvd_target_path(c->t, json, sizeof json, "backups/%s.json",
                                f->d_name) < 0 ||
                access(json, F_OK) == 0 || errno != ENOENT)
                continue;
            if (snprintf(path, sizeof path, "%s/%s", sub, f->d_name) <
                (int)sizeof path)
                r = remove_file(c, path, 0);
        }
        closedir(s);
    }
    closedir(d);
    return r;
}

int cvd_target_collect(struct cvd_target *t, uint64_t *freed)
{
    struct collect c = { t, { NULL, 0, 0 }, 0 };
    int r = each_backup(&c);

    if (r == 0 && c.named.n)
        qsort(c.named.sha, c.named.n, 32, cmp_sha);
    if (r == 0)
        r = cvd_target_walk_blocks(t, block_entry, &c);
    if (r == 0)
        r = index_entries(&c);
    free(c.named.sha);
    *freed = c.freed;
    return r;
}
