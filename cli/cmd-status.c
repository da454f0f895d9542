/* status: the node at a glance (GET /v1/status). */
#include "args.h"
#include "cli.h"
#include "client.h"

#include <stdio.h>
#include <string.h>

/* "Available 3, Pending 1" */
static void by_state(json_object *o)
{
    json_object *states = NULL;
    int first = 1;

    json_object_object_get_ex(o, "volumesByState", &states);
    if (!states || !json_object_is_type(states, json_type_object))
        return;
    json_object_object_foreach(states, state, count) {
        printf("%s%s %lld", first ? " (" : ", ", state,
               (long long)json_object_get_int64(count));
        first = 0;
    }
    printf("%s", first ? "" : ")");
}

static void listeners(json_object *o)
{
    json_object *l = NULL, *nbd = NULL;
    size_t i, n;

    json_object_object_get_ex(o, "listeners", &l);
    json_object_object_get_ex(l, "nbd", &nbd);
    n = nbd ? json_object_array_length(nbd) : 0;
    for (i = 0; i < n; i++)
        printf("listening:    nbd %s (TLS %s)\n", json_object_get_string(
                   json_object_array_get_idx(nbd, i)), cli_str(o, "tls"));
    if (cli_str(l, "nbdUnix")[0])
        printf("listening:    nbd unix socket %s\n", cli_str(l, "nbdUnix"));
    if (cli_str(l, "adminSocket")[0])
        printf("listening:    admin API on %s\n", cli_str(l, "adminSocket"));
    if (cli_str(l, "adminHttps")[0])
        printf("listening:    admin API over HTTPS on %s\n",
               cli_str(l, "adminHttps"));
}

static void encryption(json_object *o)
{
    json_object *e = NULL;

    json_object_object_get_ex(o, "encryption", &e);
    if (!e)
        return;
    printf("cluster KEK:  %s", cli_str(e, "encryptionState"));
    if (cli_int(e, "currentKekGeneration"))
        printf(", generation %lld, protected by %s",
               cli_int(e, "currentKekGeneration"), cli_str(e, "kekProtection"));
    if (cli_str(e, "rotationState")[0] &&
        strcmp(cli_str(e, "rotationState"), "NoRotation"))
        printf(", %s", cli_str(e, "rotationState"));
    printf("\n");
}

static void print_status(json_object *o)
{
    printf("cryptvold:    %s", cli_str(o, "version"));
    if (cli_str(o, "node")[0])
        printf(" on node %s", cli_str(o, "node"));
    printf("\n");
    if (cli_str(o, "dataDir")[0])
        printf("data dir:     %s (metadata: %s)\n", cli_str(o, "dataDir"),
               cli_str(o, "metadata"));
    listeners(o);
    printf("volumes:      %lld", cli_int(o, "volumes"));
    by_state(o);
    printf("; %lld served\n", cli_int(o, "volumesServed"));
    printf("secrets:      %lld\n", cli_int(o, "secrets"));
    encryption(o);
    printf("connections:  %lld NBD client%s\n", cli_int(o, "connections"),
           cli_int(o, "connections") == 1 ? "" : "s");
}

int cmd_status(struct cli_args *a)
{
    return cli_admin_get(a, "/v1/status", print_status);
}
