/* snapshot create, list, delete, rollback: a volume's snapshots, named
 * VOL@SNAP (docs/admin-api.md, "Snapshots"). */
#include "args.h"
#include "cli.h"
#include "client.h"
#include "core/error.h"
#include "core/size.h"

#include <stdio.h>
#include <string.h>

/* "/v1/volumes/VOL/snapshots" and what follows. */
static int snapshots_path(char *buf, size_t len, const char *vol,
                          const char *snap, const char *suffix)
{
    char tail[128];

    snprintf(tail, sizeof tail, "/snapshots%s%s%s", snap ? "/" : "",
             snap ? snap : "", suffix);
    return cli_admin_path(buf, len, "volume", "/v1/volumes/", vol, tail);
}

int cmd_snapshot_create(struct cli_args *a)
{
    char vol[CLI_NAME_MAX], snap[CLI_NAME_MAX], path[256], size[32];
    json_object *body, *out = NULL;
    int r;

    r = cli_snapshot_arg(a, 0, vol, snap);
    if (r > 0)
        return r;
    if (r == 0)
        r = snapshots_path(path, sizeof path, vol, NULL, "");
    if (r < 0)
        return cli_fail(r);
    body = json_object_new_object();
    json_object_object_add(body, "name", json_object_new_string(snap));
    r = cli_admin_call_json(&a->admin, "POST", path, body, &out);
    json_object_put(body);
    if (r < 0)
        return cli_fail(r);
    if (a->admin.json)
        cli_print_json(out);
    else
        printf("snapshot %s@%s created %s (%s on disk)\n", vol, snap,
               cli_str(out, "created"), cv_format_size(
                   (uint64_t)cli_int(out, "allocated"), size, sizeof size));
    json_object_put(out);
    return EXIT_OK;
}

/* "c1, c2", or "-". */
static void clones_words(json_object *s, char *buf, size_t len)
{
    json_object *clones = NULL;
    size_t i, n, at = 0;

    json_object_object_get_ex(s, "clones", &clones);
    n = json_object_is_type(clones, json_type_array) ?
        json_object_array_length(clones) : 0;
    snprintf(buf, len, "-");
    for (i = 0; i < n && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? ", " : "",
                               json_object_get_string(
                                   json_object_array_get_idx(clones, i)));
}

static void print_snapshots(const char *vol, json_object *out)
{
    json_object *list = NULL;
    char size[32], clones[512];
    size_t i, n;
    int w = 4;

    json_object_object_get_ex(out, "snapshots", &list);
    n = json_object_is_type(list, json_type_array) ?
        json_object_array_length(list) : 0;
    if (n == 0) {
        printf("volume %s has no snapshots\n", vol);
        return;
    }
    for (i = 0; i < n; i++) {
        int l = (int)strlen(cli_str(json_object_array_get_idx(list, i),
                                    "name"));
        w = l > w ? l : w;
    }
    printf("%-*s  %-20s  %10s  %s\n", w, "NAME", "CREATED", "ALLOCATED",
           "CLONES");
    for (i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(list, i);
        cv_format_size((uint64_t)cli_int(s, "allocated"), size, sizeof size);
        clones_words(s, clones, sizeof clones);
        printf("%-*s  %-20s  %10s  %s\n", w, cli_str(s, "name"),
               cli_str(s, "created"), size, clones);
    }
}

int cmd_snapshot_list(struct cli_args *a)
{
    json_object *out = NULL;
    char path[256];
    int r;

    r = snapshots_path(path, sizeof path, a->arg[0], NULL, "");
    if (r == 0)
        r = cli_admin_call(&a->admin, "GET", path, NULL, 0, &out);
    if (r < 0)
        return cli_fail(r);
    if (a->admin.json)
        cli_print_json(out);
    else
        print_snapshots(a->arg[0], out);
    json_object_put(out);
    return EXIT_OK;
}

int cmd_snapshot_delete(struct cli_args *a)
{
    char vol[CLI_NAME_MAX], snap[CLI_NAME_MAX], path[256];
    char label[160], done[192];
    json_object *out = NULL;
    int r;

    r = cli_snapshot_arg(a, 0, vol, snap);
    if (r > 0)
        return r;
    if (r == 0)
        r = snapshots_path(path, sizeof path, vol, snap, "");
    if (r == 0)
        r = cli_admin_call(&a->admin, "DELETE", path, NULL, 0, &out);
    snprintf(label, sizeof label, "merging snapshot %s@%s", vol, snap);
    snprintf(done, sizeof done, "snapshot %s@%s deleted (its blocks merged "
             "into the next layer)", vol, snap);
    return cli_job_finish(a, r, out, vol, label, done);
}

int cmd_snapshot_rollback(struct cli_args *a)
{
    char vol[CLI_NAME_MAX], snap[CLI_NAME_MAX], path[256];
    json_object *out = NULL;
    int r;

    r = cli_snapshot_arg(a, 0, vol, snap);
    if (r > 0)
        return r;
    if (r == 0)
        r = snapshots_path(path, sizeof path, vol, snap, "/rollback");
    if (r == 0)
        r = cli_admin_call(&a->admin, "POST", path, "{}", 2, &out);
    if (r < 0)
        return cli_fail(r);
    if (a->admin.json)
        cli_print_json(out);
    else
        printf("volume %s rolled back to snapshot %s (what was written "
               "after it is gone; the snapshot stays)\n", vol, snap);
    json_object_put(out);
    return EXIT_OK;
}
