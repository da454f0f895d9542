/* volume clone, flatten, import, export: a volume's layers (clones of a
 * snapshot, a clone made whole) and raw LUKS images in and out
 * (docs/admin-api.md, "Clones", "Import and export"). */
#include "args.h"
#include "cli.h"
#include "client.h"
#include "core/error.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#define ADD(o, k, v) json_object_object_add(o, k, v)

/* --type only with --secret (a clone of its own format), --secret or
 * --class. */
static int clone_options(const struct cli_args *a)
{
    const char *type = cli_value(a, "type");

    if (cli_value(a, "secret") && cli_value(a, "class"))
        return cli_usage_error(a, "--secret or --class, not both (a class "
                               "says where its volumes' secrets come from)");
    if (type && !cli_value(a, "secret"))
        return cli_usage_error(a, "--type goes with --secret (a clone "
                               "without a secret of its own keeps its "
                               "parent's format)");
    if (type && strcmp(type, "luks2") && strcmp(type, "luks1"))
        return cli_usage_error(a, "--type: \"%.32s\" (use luks2 or luks1)",
                               type);
    return 0;
}

/* --replicas, --min-replicas as "replicas", "minReplicas". */
static int replica_options(struct cli_args *a, json_object *body)
{
    unsigned n;

    if (cli_value(a, "replicas")) {
        if (cli_u32_value(a, "replicas", &n))
            return EXIT_USAGE;
        ADD(body, "replicas", json_object_new_int64(n));
    }
    if (cli_value(a, "min-replicas")) {
        if (cli_u32_value(a, "min-replicas", &n))
            return EXIT_USAGE;
        ADD(body, "minReplicas", json_object_new_int64(n));
    }
    return 0;
}

int cmd_volume_clone(struct cli_args *a)
{
    char vol[CLI_NAME_MAX], snap[CLI_NAME_MAX], parent[2 * CLI_NAME_MAX];
    json_object *body;
    int r;

    r = cli_snapshot_arg(a, 0, vol, snap);
    if (r > 0)
        return r;
    if (r < 0)
        return cli_fail(r);
    r = clone_options(a);
    if (r)
        return r;
    snprintf(parent, sizeof parent, "%s@%s", vol, snap);
    body = json_object_new_object();
    ADD(body, "name", json_object_new_string(a->arg[1]));
    ADD(body, "parent", json_object_new_string(parent));
    if (cli_value(a, "secret"))
        ADD(body, "secret", json_object_new_string(cli_value(a, "secret")));
    if (cli_value(a, "type"))
        ADD(body, "type", json_object_new_string(cli_value(a, "type")));
    if (cli_value(a, "class"))
        ADD(body, "class", json_object_new_string(cli_value(a, "class")));
    r = replica_options(a, body);
    if (r) {
        json_object_put(body);
        return r;
    }
    return cli_volume_make(a, body);
}

/* POST /v1/volumes/NAME/suffix with body (freed); the answer in *out. */
static int post_on_volume(struct cli_args *a, const char *suffix,
                          json_object *body, json_object **out)
{
    char path[256];
    int r;

    r = cli_admin_path(path, sizeof path, "volume", "/v1/volumes/",
                       a->arg[0], suffix);
    if (r == 0)
        r = cli_admin_call_json(&a->admin, "POST", path, body, out);
    json_object_put(body);
    return r;
}

int cmd_volume_flatten(struct cli_args *a)
{
    json_object *out = NULL;
    char label[CLI_NAME_MAX + 16], done[CLI_NAME_MAX + 96];
    int r;

    r = post_on_volume(a, "/flatten", json_object_new_object(), &out);
    snprintf(label, sizeof label, "flattening %s", a->arg[0]);
    snprintf(done, sizeof done, "volume %s flattened: it has no parent now "
             "and opens with its own secret alone", a->arg[0]);
    return cli_job_finish(a, r, out, a->arg[0], label, done);
}

int cmd_volume_import(struct cli_args *a)
{
    json_object *body, *out = NULL;
    char file[PATH_MAX], label[CLI_NAME_MAX + 16], done[PATH_MAX + 96];
    char scratch[128];
    int r;

    r = cli_daemon_path(a, a->arg[1], file, sizeof file);
    if (r > 0)
        return r;
    /* The name checked here too, before the path is in any message. */
    if (r == 0)
        r = cli_admin_path(scratch, sizeof scratch, "volume", "", a->arg[0],
                           "");
    if (r < 0)
        return cli_fail(r);
    body = json_object_new_object();
    ADD(body, "name", json_object_new_string(a->arg[0]));
    ADD(body, "import", json_object_new_string(file));
    ADD(body, "secret", json_object_new_string(cli_value(a, "secret")));
    r = cli_admin_call_json(&a->admin, "POST", "/v1/volumes", body, &out);
    json_object_put(body);
    snprintf(label, sizeof label, "importing %s", a->arg[0]);
    snprintf(done, sizeof done, "volume %s imported from %s", a->arg[0],
             file);
    return cli_job_finish(a, r, out, a->arg[0], label, done);
}

int cmd_volume_export(struct cli_args *a)
{
    const char *snap = cli_value(a, "snapshot");
    json_object *body, *out = NULL;
    char file[PATH_MAX], what[2 * CLI_NAME_MAX + 16];
    char label[2 * CLI_NAME_MAX + 32], done[PATH_MAX + 256], scratch[128];
    int r;

    if (snap && strchr(snap, '@'))
        return cli_usage_error(a, "--snapshot takes the snapshot's name "
                               "alone, not \"%.140s\" (SNAP of VOL@SNAP; "
                               "VOL is NAME)", snap);
    r = cli_daemon_path(a, a->arg[1], file, sizeof file);
    if (r > 0)
        return r;
    if (r == 0 && snap)
        r = cli_admin_path(scratch, sizeof scratch, "snapshot", "", snap, "");
    if (r < 0)
        return cli_fail(r);
    body = json_object_new_object();
    ADD(body, "file", json_object_new_string(file));
    if (snap)
        ADD(body, "snapshot", json_object_new_string(snap));
    ADD(body, "sparse", json_object_new_boolean(cli_flag(a, "sparse")));
    r = post_on_volume(a, "/export", body, &out);
    if (snap)
        snprintf(what, sizeof what, "snapshot %s@%s", a->arg[0], snap);
    else
        snprintf(what, sizeof what, "volume %s", a->arg[0]);
    snprintf(label, sizeof label, "exporting %s", what);
    snprintf(done, sizeof done, "%s exported to %s (a raw LUKS image: "
             "cryptsetup open takes it with the volume's secret)", what,
             file);
    return cli_job_finish(a, r, out, a->arg[0], label, done);
}
