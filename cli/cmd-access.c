/* volume access and class access: who may open volumes over NBD
 * (docs/nbd.md).  IDs follow the option that says what to do with them:
 *   cryptvol volume access db --allow cn:tenant-a psk:backup --deny uid:33 */
#include "cli.h"
#include "client.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void print_entries(json_object *a, const char *indent)
{
    size_t n = a ? json_object_array_length(a) : 0;

    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(a, i);
        printf("%s%-5s %s\n", indent, cli_bool(e, "allow") ? "allow" : "deny",
               cli_str(e, "identity"));
    }
}

void cli_print_access(json_object *acc, const char *indent)
{
    json_object *own = NULL, *cls = NULL;
    const char *applies = cli_str(acc, "applies");

    json_object_object_get_ex(acc, "entries", &own);
    json_object_object_get_ex(acc, "class_entries", &cls);
    if (!strcmp(applies, "class")) {
        printf("%sfrom class %s:\n", indent, cli_str(acc, "class"));
        print_entries(cls, indent);
    } else if (own && json_object_array_length(own)) {
        print_entries(own, indent);
    } else {
        printf("%s(no list: %s to every authenticated client)\n", indent,
               !strcmp(cli_str(acc, "default"), "closed") ? "closed" : "open");
    }
}

static void print_access(json_object *o)
{
    printf("%s:\n", cli_str(o, "name"));
    cli_print_access(o, "  ");
}

static void add_id(json_object *body, const char *key, const char *id)
{
    json_object *a;

    if (!json_object_object_get_ex(body, key, &a)) {
        a = json_object_new_array();
        json_object_object_add(body, key, a);
    }
    json_object_array_add(a, json_object_new_string(id));
}

/* Fills body from the options; -1 when the call is to be made (*name set),
 * else an exit status. */
static int parse(int argc, char **argv, struct cli_admin *a, json_object *body,
                 const char **name, int *change)
{
    static const struct option opts[] = {
        { "allow", no_argument, NULL, 'a' },
        { "deny", no_argument, NULL, 'd' },
        { "remove", no_argument, NULL, 'r' },
        { "clear", no_argument, NULL, 'c' },
        { "show", no_argument, NULL, 's' },
        CLI_ADMIN_LONGOPTS,
        { 0 } };
    const char *mode = NULL;
    int c, pending = 0;

    *name = NULL;
    /* "-": IDs come back in order, as option 1, after the mode they
     * follow. */
    while ((c = getopt_long(argc, argv, "-:", opts, NULL)) != -1) {
        if (c == 1 && !*name) {
            *name = optarg;
        } else if (c == 1 && mode) {
            add_id(body, mode, optarg);
            pending = 0;
            *change = 1;
        } else if (c == 1) {
            return cli_usage(a->cmd, "\"%s\": give --allow, --deny or "
                             "--remove before identities", optarg);
        } else if (c == 'a' || c == 'd' || c == 'r') {
            if (pending)
                return cli_usage(a->cmd, "--%s needs at least one identity",
                                 mode);
            mode = c == 'a' ? "allow" : c == 'd' ? "deny" : "remove";
            pending = 1;
        } else if (c == 'c') {
            json_object_object_add(body, "clear", json_object_new_boolean(1));
            *change = 1;
        } else if (c != 's' && !cli_admin_option(a, c, optarg)) {
            return cli_bad_option(a->cmd, c, argv);
        }
    }
    if (pending)
        return cli_usage(a->cmd, "--%s needs at least one identity", mode);
    if (!*name)
        return cli_usage(a->cmd, "needs NAME");
    return -1;
}

static int access_cmd(int argc, char **argv, const char *cmd,
                      const char *what, const char *prefix)
{
    struct cli_admin a = { .cmd = cmd };
    json_object *body = json_object_new_object(), *out = NULL;
    const char *name;
    char path[256];
    int change = 0, r;

    r = parse(argc, argv, &a, body, &name, &change);
    if (r >= 0) {
        json_object_put(body);
        return r;
    }
    r = cli_admin_path(path, sizeof path, what, prefix, name, "/access");
    if (r < 0) {
        json_object_put(body);
        return cli_fail(r);
    }
    r = change ? cli_admin_call_json(&a, "POST", path, body, &out)
               : cli_admin_call(&a, "GET", path, NULL, 0, &out);
    json_object_put(body);
    return cli_admin_finish(&a, r, out, print_access);
}

int cmd_volume_access(int argc, char **argv)
{
    return access_cmd(argc, argv, "volume access", "volume", "/v1/volumes/");
}

int cmd_class_access(int argc, char **argv)
{
    return access_cmd(argc, argv, "class access", "class", "/v1/classes/");
}
