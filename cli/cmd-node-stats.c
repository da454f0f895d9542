/* node stats [NAME]: a node's TLS counters (GET /v1/node/stats, or
 * /v1/nodes/NAME/stats, which the daemon asks NAME for over the peer
 * port), printed as the kernel prints /proc/net/tls_stat: one block per
 * server (nbd, admin, peer), then a row per peer. */
#include "args.h"
#include "cli.h"
#include "client.h"
#include "core/error.h"

#include <stdio.h>
#include <string.h>

static const char *const counters[] = {
    "TlsCurrTxSw", "TlsCurrRxSw", "TlsTxSw", "TlsRxSw", "TlsDecryptError",
    "TlsHandshakeFail", NULL,
};

/* The peer port's refusals, as tls_stat would name them. */
static const struct { const char *json, *name; } refusals[] = {
    { "noCertificate", "RefusedNoCertificate" },
    { "otherCa", "RefusedOtherCa" },
    { "plaintext", "RefusedPlaintext" },
    { "notMember", "RefusedNotMember" },
    { "removed", "RefusedRemoved" },
    { "unverified", "RefusedUnverified" },
    { "plaintextHost", "RefusedPlaintextHost" },
    { "plaintextType", "RefusedPlaintextType" },
};

static void block(const char *server, json_object *s)
{
    json_object *ref = NULL;
    size_t i;

    printf("%s\n", server);
    for (i = 0; counters[i]; i++)
        printf("%-32s\t%lld\n", counters[i], cli_int(s, counters[i]));
    if (!json_object_object_get_ex(s, "Refused", &ref) || !ref)
        return;
    for (i = 0; i < sizeof refusals / sizeof *refusals; i++)
        printf("%-32s\t%lld\n", refusals[i].name,
               cli_int(ref, refusals[i].json));
    /* The peer port's plaintext sessions and peer-tls (repltransport). */
    if (!cli_str(s, "TlsMode")[0])
        return;
    printf("%-32s\t%lld\n", "PlainCurr", cli_int(s, "PlainCurr"));
    printf("%-32s\t%lld\n", "PlainTotal", cli_int(s, "PlainTotal"));
    printf("%-32s\t%s\n", "TlsMode", cli_str(s, "TlsMode"));
    printf("%-32s\t%lld\n", "TlsModeChanges", cli_int(s, "TlsModeChanges"));
}

static const char *or_dash(const char *s)
{
    return s[0] ? s : "-";
}

static void peer_rows(json_object *peers)
{
    size_t i, n = peers ? json_object_array_length(peers) : 0;
    int w = 4;

    for (i = 0; i < n; i++) {
        int l = (int)strlen(cli_str(json_object_array_get_idx(peers, i),
                                    "name"));
        w = l > w ? l : w;
    }
    printf("\n%-*s  %-20s  %4s  %8s  %7s  %9s  %7s  %s\n", w, "PEER",
           "ADDRESS", "CURR", "SESSIONS", "DECRYPT", "HANDSHAKE", "REFUSED",
           "LAST REFUSAL");
    for (i = 0; i < n; i++) {
        json_object *p = json_object_array_get_idx(peers, i);

        printf("%-*s  %-20s  %4lld  %8lld  %7lld  %9lld  %7lld  %s\n", w,
               or_dash(cli_str(p, "name")), or_dash(cli_str(p, "address")),
               cli_int(p, "TlsCurrTxSw"), cli_int(p, "TlsTxSw"),
               cli_int(p, "TlsDecryptError"), cli_int(p, "TlsHandshakeFail"),
               cli_int(p, "refused"), or_dash(cli_str(p, "lastRefusal")));
    }
}

static void print_stats(json_object *o)
{
    static const char *const servers[] = { "nbd", "admin", "peer", NULL };
    json_object *s = NULL, *one, *peers = NULL;

    printf("node %s\n", or_dash(cli_str(o, "node")));
    json_object_object_get_ex(o, "servers", &s);
    for (size_t i = 0; servers[i]; i++)
        if (s && json_object_object_get_ex(s, servers[i], &one)) {
            printf("\n");
            block(servers[i], one);
        }
    if (json_object_object_get_ex(o, "peers", &peers) && peers &&
        json_object_array_length(peers))
        peer_rows(peers);
}

int cmd_node_stats(struct cli_args *a)
{
    char path[128];
    int r;

    if (a->nargs == 0)
        return cli_admin_get(a, "/v1/node/stats", print_stats);
    r = cli_admin_path(path, sizeof path, "node", "/v1/nodes/", a->arg[0],
                       "/stats");
    if (r < 0)
        return cli_admin_finish(&a->admin, r, NULL, NULL);
    return cli_admin_get(a, path, print_stats);
}
