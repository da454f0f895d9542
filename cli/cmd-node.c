/* node add, node list, node remove: the members of a cluster on etcd. */
#include "args.h"
#include "cli.h"
#include "client.h"
#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void gens_text(json_object *n, char *buf, size_t len)
{
    json_object *g = NULL;
    size_t i, k, used = 0;

    json_object_object_get_ex(n, "kekGenerations", &g);
    k = g ? json_object_array_length(g) : 0;
    buf[0] = '\0';
    for (i = 0; i < k && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "",
                                 json_object_get_string(
                                     json_object_array_get_idx(g, i)));
    if (!k)
        snprintf(buf, len, "-");
}

static void print_etcd(json_object *out)
{
    json_object *e = NULL;

    if (!json_object_object_get_ex(out, "etcd", &e) || !e)
        return;
    if (cli_bool(e, "reachable"))
        printf("etcd: %s\n", cli_str(e, "endpoint"));
    else
        printf("etcd: UNREACHABLE since %s: %s%s\n",
               cli_str(e, "since")[0] ? cli_str(e, "since") : "start",
               cli_str(e, "error"), cli_bool(out, "stale") ?
               " (the list is the last one this node read)" : "");
}

static void print_list(json_object *out)
{
    json_object *nodes = NULL;
    size_t i, n;
    int w = 4, wa = 7, l;
    char gens[128];

    json_object_object_get_ex(out, "nodes", &nodes);
    n = nodes ? json_object_array_length(nodes) : 0;
    for (i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(nodes, i);
        l = (int)strlen(cli_str(o, "name")) + 2;
        w = l > w ? l : w;
        l = (int)strlen(cli_str(o, "address"));
        wa = l > wa ? l : wa;
    }
    printf("%-*s  %-*s  %-7s  %-20s  %-8s  %s\n", w, "NAME", wa, "ADDRESS",
           "STATE", "LAST SEEN", "KEK GENS", "VOLUMES");
    for (i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(nodes, i);
        char name[80];

        snprintf(name, sizeof name, "%s%s", cli_str(o, "name"),
                 cli_bool(o, "self") ? " *" : "");
        gens_text(o, gens, sizeof gens);
        printf("%-*s  %-*s  %-7s  %-20s  %-8s  %lld\n", w, name, wa,
               cli_str(o, "address"), cli_str(o, "state"),
               cli_str(o, "lastSeen")[0] ? cli_str(o, "lastSeen") : "-",
               gens, cli_int(o, "volumes"));
    }
    print_etcd(out);
}

int cmd_node_list(struct cli_args *a)
{
    return cli_admin_get(a, "/v1/nodes", print_list);
}

static void print_added(json_object *o)
{
    printf("node %s added (%s): start it with --node-name %s and its "
           "certificate; it gets the keys from a member and joins\n",
           cli_str(o, "name"), cli_str(o, "address"), cli_str(o, "name"));
}

int cmd_node_add(struct cli_args *a)
{
    json_object *body, *out = NULL;
    int r;

    body = json_object_new_object();
    json_object_object_add(body, "name", json_object_new_string(a->arg[0]));
    json_object_object_add(body, "address", json_object_new_string(
                               cli_value(a, "address")));
    r = cli_admin_call_json(&a->admin, "POST", "/v1/nodes", body, &out);
    json_object_put(body);
    return cli_admin_finish(&a->admin, r, out, print_added);
}

static void print_removed(json_object *o)
{
    printf("node %s removed\n", cli_str(o, "name"));
}

int cmd_node_remove(struct cli_args *a)
{
    char path[128];
    json_object *out = NULL;
    int r = cli_admin_path(path, sizeof path, "node", "/v1/nodes/",
                           a->arg[0], "");

    if (r == 0)
        r = cli_admin_call(&a->admin, "DELETE", path, NULL, 0, &out);
    return cli_admin_finish(&a->admin, r, out, print_removed);
}
