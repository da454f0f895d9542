/* volume access and class access: who may open volumes over NBD
 * (docs/nbd.md).  IDs follow the option that says what to do with them:
 *   cryptvol volume access db --allow cn:tenant-a psk:backup --deny uid:33 */
#include "args.h"
#include "cli.h"
#include "client.h"

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
    json_object_object_get_ex(acc, "classEntries", &cls);
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

/* body's key: the words given after --opt. */
static int add_ids(const struct cli_args *a, json_object *body,
                   const char *opt)
{
    json_object *ids = NULL;
    const char *id;
    size_t pos = 0;

    while ((id = cli_next_value(a, opt, &pos))) {
        if (!ids) {
            ids = json_object_new_array();
            json_object_object_add(body, opt, ids);
        }
        json_object_array_add(ids, json_object_new_string(id));
    }
    return ids != NULL;
}

static int access_cmd(struct cli_args *a, const char *what,
                      const char *prefix)
{
    json_object *body = json_object_new_object(), *out = NULL;
    char path[256];
    int change = 0, r;

    change |= add_ids(a, body, "allow");
    change |= add_ids(a, body, "deny");
    change |= add_ids(a, body, "remove");
    if (cli_flag(a, "clear")) {
        json_object_object_add(body, "clear", json_object_new_boolean(1));
        change = 1;
    }
    r = cli_admin_path(path, sizeof path, what, prefix, a->arg[0], "/access");
    if (r == 0)
        r = change ? cli_admin_call_json(&a->admin, "POST", path, body, &out)
                   : cli_admin_call(&a->admin, "GET", path, NULL, 0, &out);
    json_object_put(body);
    return cli_admin_finish(&a->admin, r, out, print_access);
}

int cmd_volume_access(struct cli_args *a)
{
    return access_cmd(a, "volume", "/v1/volumes/");
}

int cmd_class_access(struct cli_args *a)
{
    return access_cmd(a, "class", "/v1/classes/");
}
