/* node peer-tls [MODE]: this node's peer-tls (off, on, require) from
 * GET /v1/node/peer-tls, or set with POST (docs/cluster.md, "peer-tls":
 * a cluster moves from off to require node by node, every node to on
 * first).  The mode set lasts until SIGHUP rereads the config file. */
#include "args.h"
#include "cli.h"
#include "client.h"
#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void print_mode(json_object *o)
{
    const char *was = cli_str(o, "previous");

    if (was[0] && strcmp(was, cli_str(o, "mode")))
        printf("peer-tls %s (was %s)\n", cli_str(o, "mode"), was);
    else
        printf("peer-tls %s\n", cli_str(o, "mode"));
}

int cmd_node_peer_tls(struct cli_args *a)
{
    static const char *const modes[] = { "off", "on", "require", NULL };
    json_object *body, *out = NULL;
    size_t i;
    int r;

    if (a->nargs == 0)
        return cli_admin_get(a, "/v1/node/peer-tls", print_mode);
    for (i = 0; modes[i] && strcmp(modes[i], a->arg[0]); i++)
        ;
    if (!modes[i])
        return cli_admin_finish(&a->admin, cv_error(-EINVAL, "peer-tls "
                                "\"%.32s\": expected off, on or require",
                                a->arg[0]), NULL, NULL);
    body = json_object_new_object();
    json_object_object_add(body, "mode", json_object_new_string(modes[i]));
    r = cli_admin_call_json(&a->admin, "POST", "/v1/node/peer-tls", body,
                            &out);
    json_object_put(body);
    return cli_admin_finish(&a->admin, r, out, print_mode);
}
