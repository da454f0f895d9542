/* The chain's manifest (docs/store.md): JSON through json-c, checked
 * whole when read (it names files we open and delete), replaced by
 * chain.tmp + fsync + rename + directory fsync when written. */
#include "chain-internal.h"
#include "core/error.h"
#include "core/json-util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST_FORMAT "cryptvol-chain"
#define MANIFEST_VERSION 1

int chain_name_ok(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > CV_CHAIN_NAME_MAX || !strcmp(name, ".") ||
        !strcmp(name, ".."))
        return 0;
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '/' || *p == '@' || *p == 0x7f)
            return 0;
    return 1;
}

int chain_manifest_find(const struct chain_manifest *m, const char *name)
{
    for (size_t i = 0; i < m->nlayers; i++)
        if (m->layers[i].snapshot[0] && !strcmp(m->layers[i].snapshot, name))
            return (int)i;
    return -1;
}

static int read_all(int dirfd, const char *dir, char **out)
{
    struct stat st;
    char *text = NULL;
    size_t have = 0;
    int fd, r = 0;

    fd = openat(dirfd, CHAIN_MANIFEST, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cv_error(-errno, "%s: manifest: %s", dir, strerror(errno));
    if (fstat(fd, &st) != 0) {
        r = cv_error(-errno, "%s: manifest: %s", dir, strerror(errno));
        goto out;
    }
    if (st.st_size > CHAIN_MANIFEST_MAX) {
        r = cv_error(-EINVAL, "%s: manifest: %lld bytes, not a chain "
                     "manifest", dir, (long long)st.st_size);
        goto out;
    }
    if (!(text = malloc((size_t)st.st_size + 1))) {
        r = cv_error(-ENOMEM, "%s: manifest: out of memory", dir);
        goto out;
    }
    while (have < (size_t)st.st_size) {
        ssize_t n = read(fd, text + have, (size_t)st.st_size - have);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r = cv_error(n < 0 ? -errno : -EIO, "%s: manifest: %s", dir,
                         n < 0 ? strerror(errno) : "shorter than its size");
            goto out;
        }
        have += (size_t)n;
    }
    text[have] = '\0';
    *out = text;
    text = NULL;
out:
    free(text);
    close(fd);
    return r;
}

static int parse_parent(json_object *p, const char *dir,
                        struct chain_manifest *m)
{
    const char *vol = cv_json_string(p, "volume");
    const char *snap = cv_json_string(p, "snapshot");
    json_object *own;

    if (!json_object_is_type(p, json_type_object) || !vol || !snap ||
        !chain_name_ok(vol) || !chain_name_ok(snap) ||
        !json_object_object_get_ex(p, "ownFormat", &own) ||
        !json_object_is_type(own, json_type_boolean))
        return cv_error(-EINVAL, "%s: manifest: \"parent\" is not "
                        "{volume, snapshot, ownFormat} with valid names", dir);
    m->has_parent = 1;
    snprintf(m->parent_volume, sizeof m->parent_volume, "%s", vol);
    snprintf(m->parent_snapshot, sizeof m->parent_snapshot, "%s", snap);
    m->parent_own_format = json_object_get_boolean(own);
    return 0;
}

static int parse_layer(json_object *o, const char *dir, size_t i, int head,
                       struct chain_manifest *m)
{
    struct chain_manifest_layer *l = &m->layers[i];
    json_object *v;
    int64_t id, created = 0;
    const char *snap, *state;

    if (!json_object_is_type(o, json_type_object) ||
        cv_json_int(o, "id", 1, UINT32_MAX, &id) < 0)
        return cv_error(-EINVAL, "%s: manifest: layer %zu has no valid "
                        "\"id\"", dir, i);
    l->id = (unsigned)id;
    if (l->id >= m->next_id || (i > 0 && l->id <= m->layers[i - 1].id))
        return cv_error(-EINVAL, "%s: manifest: layer ids must rise and stay "
                        "below nextId (%u at %zu)", dir, l->id, i);
    if (json_object_object_get_ex(o, "created", &v) &&
        cv_json_int(o, "created", 0, INT64_MAX, &created) < 0)
        return cv_error(-EINVAL, "%s: manifest: layer %u: bad \"created\"",
                        dir, l->id);
    l->created = created;
    snap = cv_json_string(o, "snapshot");
    if (json_object_object_get_ex(o, "snapshot", &v) &&
        (!snap || !chain_name_ok(snap)))
        return cv_error(-EINVAL, "%s: manifest: layer %u: bad snapshot name",
                        dir, l->id);
    if (head == !!snap)
        return cv_error(-EINVAL, head ? "%s: manifest: the head (layer %u) "
                        "names a snapshot" : "%s: manifest: layer %u below "
                        "the head names no snapshot", dir, l->id);
    snprintf(l->snapshot, sizeof l->snapshot, "%s", snap ? snap : "");
    state = cv_json_string(o, "state");
    if (json_object_object_get_ex(o, "state", &v) &&
        (head || !state || strcmp(state, "merging")))
        return cv_error(-EINVAL, "%s: manifest: layer %u: bad \"state\"",
                        dir, l->id);
    l->merging = state != NULL;
    if (snap && chain_manifest_find(m, snap) >= 0)
        return cv_error(-EINVAL, "%s: manifest: snapshot \"%s\" listed "
                        "twice", dir, snap);
    return 0;
}

static int parse(json_object *root, const char *dir, struct chain_manifest *m)
{
    const char *fmt = cv_json_string(root, "format");
    json_object *layers, *parent;
    int64_t version, off, next;
    int r;

    memset(m, 0, sizeof *m);
    if (!fmt || strcmp(fmt, MANIFEST_FORMAT) ||
        cv_json_int(root, "version", 0, INT32_MAX, &version) < 0)
        return cv_error(-EINVAL, "%s: manifest: not a %s manifest", dir,
                        MANIFEST_FORMAT);
    if (version != MANIFEST_VERSION)
        return cv_error(-EINVAL, "%s: manifest: version %lld (this build "
                        "reads %d)", dir, (long long)version, MANIFEST_VERSION);
    if (cv_json_int(root, "dataOffset", 0, INT64_MAX, &off) < 0 ||
        off % CV_CHAIN_BLOCK)
        return cv_error(-EINVAL, "%s: manifest: \"dataOffset\" is not a "
                        "multiple of %u", dir, CV_CHAIN_BLOCK);
    if (cv_json_int(root, "nextId", 2, UINT32_MAX, &next) < 0)
        return cv_error(-EINVAL, "%s: manifest: bad \"nextId\"", dir);
    m->data_offset = (uint64_t)off;
    m->next_id = (unsigned)next;
    if (json_object_object_get_ex(root, "parent", &parent) &&
        (r = parse_parent(parent, dir, m)) < 0)
        return r;
    if (!json_object_object_get_ex(root, "layers", &layers) ||
        !json_object_is_type(layers, json_type_array) ||
        json_object_array_length(layers) < 1 ||
        json_object_array_length(layers) > CV_CHAIN_MAX_LAYERS)
        return cv_error(-EINVAL, "%s: manifest: \"layers\" is not an array "
                        "of 1 to %d layers", dir, CV_CHAIN_MAX_LAYERS);
    m->nlayers = json_object_array_length(layers);
    for (size_t i = 0; i < m->nlayers; i++) {
        /* Checked against the ones before it only (find sees them). */
        size_t n = m->nlayers;

        m->nlayers = i;
        r = parse_layer(json_object_array_get_idx(layers, i), dir, i,
                        i == n - 1, m);
        m->nlayers = n;
        if (r < 0)
            return r;
    }
    return 0;
}

int chain_manifest_read(int dirfd, const char *dir, struct chain_manifest *m)
{
    enum json_tokener_error jerr = json_tokener_success;
    json_object *root = NULL;
    char *text = NULL;
    int r;

    if ((r = read_all(dirfd, dir, &text)) < 0)
        return r;
    root = json_tokener_parse_verbose(text, &jerr);
    if (!root)
        r = cv_error(-EINVAL, "%s: manifest: not JSON (%s)", dir,
                     json_tokener_error_desc(jerr));
    else
        r = parse(root, dir, m);
    json_object_put(root);
    free(text);
    return r;
}

static json_object *to_json(const struct chain_manifest *m)
{
    json_object *root = json_object_new_object(), *layers, *p;
    int r = 0;

    if (!root)
        return NULL;
    r |= cv_json_add(root, "format", json_object_new_string(MANIFEST_FORMAT));
    r |= cv_json_add(root, "version", json_object_new_int(MANIFEST_VERSION));
    r |= cv_json_add(root, "dataOffset",
                     json_object_new_int64((int64_t)m->data_offset));
    r |= cv_json_add(root, "nextId", json_object_new_int64(m->next_id));
    if (m->has_parent) {
        r |= cv_json_add(root, "parent", p = json_object_new_object());
        if (p) {
            r |= cv_json_add(p, "volume",
                             json_object_new_string(m->parent_volume));
            r |= cv_json_add(p, "snapshot",
                             json_object_new_string(m->parent_snapshot));
            r |= cv_json_add(p, "ownFormat",
                             json_object_new_boolean(m->parent_own_format));
        }
    }
    r |= cv_json_add(root, "layers", layers = json_object_new_array());
    for (size_t i = 0; layers && i < m->nlayers; i++) {
        const struct chain_manifest_layer *l = &m->layers[i];
        json_object *o = json_object_new_object();

        r |= cv_json_append(layers, o);
        if (!o)
            break;
        r |= cv_json_add(o, "id", json_object_new_int64(l->id));
        if (l->snapshot[0])
            r |= cv_json_add(o, "snapshot",
                             json_object_new_string(l->snapshot));
        if (l->created)
            r |= cv_json_add(o, "created", json_object_new_int64(l->created));
        if (l->merging)
            r |= cv_json_add(o, "state", json_object_new_string("merging"));
    }
    if (r || !layers) {
        json_object_put(root);
        return NULL;
    }
    return root;
}

static int write_file(int dirfd, const char *dir, const char *text)
{
    size_t len = strlen(text), done = 0;
    int fd, r = 0;

    fd = openat(dirfd, CHAIN_MANIFEST_TMP,
                O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return cv_error(-errno, "%s: %s: %s", dir, CHAIN_MANIFEST_TMP,
                        strerror(errno));
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = cv_error(-errno, "%s: %s: %s", dir, CHAIN_MANIFEST_TMP,
                         strerror(errno));
            break;
        }
        done += (size_t)n;
    }
    if (r == 0 && fsync(fd) != 0)
        r = cv_error(-errno, "%s: %s: fsync: %s", dir, CHAIN_MANIFEST_TMP,
                     strerror(errno));
    close(fd);
    return r;
}

int chain_manifest_write(int dirfd, const char *dir,
                         const struct chain_manifest *m)
{
    json_object *root = to_json(m);
    const char *text;
    int r;

    if (!root)
        return cv_error(-ENOMEM, "%s: manifest: out of memory", dir);
    text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
                                          JSON_C_TO_STRING_NOSLASHESCAPE);
    r = text ? write_file(dirfd, dir, text)
             : cv_error(-ENOMEM, "%s: manifest: out of memory", dir);
    json_object_put(root);
    if (r == 0 && renameat(dirfd, CHAIN_MANIFEST_TMP, dirfd,
                           CHAIN_MANIFEST) != 0)
        r = cv_error(-errno, "%s: renaming %s over %s: %s", dir,
                     CHAIN_MANIFEST_TMP, CHAIN_MANIFEST, strerror(errno));
    if (r < 0) {
        unlinkat(dirfd, CHAIN_MANIFEST_TMP, 0);
        return r;
    }
    return chain_fsync_dir(dirfd, dir);
}
