/* A volume's replicas: the table volume info shows for a replicated
 * volume, and volume replicas NAME --set N [--min M], which changes how
 * many nodes hold it (docs/replication.md). */
#include "args.h"
#include "cli.h"
#include "client.h"
#include "core/size.h"

#include <stdio.h>
#include <string.h>

/* "12 MiB/100 MiB" while a resync or rebuild runs, else "-". */
static void sync_words(json_object *r, char *buf, size_t len)
{
    long long done = cli_int(r, "syncDone"), total = cli_int(r, "syncTotal");
    char a[32], b[32];

    if (total <= 0) {
        snprintf(buf, len, "-");
        return;
    }
    snprintf(buf, len, "%s/%s (%lld%%)",
             cv_format_size((uint64_t)done, a, sizeof a),
             cv_format_size((uint64_t)total, b, sizeof b),
             done * 100 / total);
}

void cli_print_replicas(json_object *v)
{
    json_object *arr = NULL;
    char behind[32], sync[96];
    size_t i, n;
    int w = 4;

    if (!json_object_object_get_ex(v, "replicas", &arr) ||
        !json_object_is_type(arr, json_type_array))
        return;
    n = json_object_array_length(arr);
    printf("replicas:     %lld (writes need %lld in sync), epoch %lld, "
           "writer %s\n", cli_int(v, "replicaCount"),
           cli_int(v, "minReplicas"), cli_int(v, "epoch"),
           cli_str(v, "writer")[0] ? cli_str(v, "writer") : "none");
    for (i = 0; i < n; i++) {
        int l = (int)strlen(cli_str(json_object_array_get_idx(arr, i),
                                    "node"));
        w = l > w ? l : w;
    }
    printf("  %-*s  %-10s  %-20s  %10s  %-24s  %s\n", w, "NODE", "STATE",
           "SINCE", "BEHIND", "SYNC", "ERROR");
    for (i = 0; i < n; i++) {
        json_object *r = json_object_array_get_idx(arr, i);

        cv_format_size((uint64_t)cli_int(r, "behind"), behind, sizeof behind);
        sync_words(r, sync, sizeof sync);
        printf("  %-*s  %-10s  %-20s  %10s  %-24s  %s\n", w,
               cli_str(r, "node"), cli_str(r, "state"),
               cli_str(r, "since")[0] ? cli_str(r, "since") : "-",
               cli_int(r, "behind") ? behind : "0", sync,
               cli_str(r, "error")[0] ? cli_str(r, "error") : "-");
    }
}

static void print_set(json_object *v)
{
    printf("volume %s: %lld replica%s\n", cli_str(v, "name"),
           cli_int(v, "replicaCount"),
           cli_int(v, "replicaCount") == 1 ? "" : "s");
    cli_print_replicas(v);
}

int cmd_volume_replicas(struct cli_args *a)
{
    json_object *body, *out = NULL;
    char path[256];
    uint32_t n, min;
    int r;

    if (cli_u32_value(a, "set", &n))
        return EXIT_USAGE;
    if (cli_value(a, "min") && cli_u32_value(a, "min", &min))
        return EXIT_USAGE;
    r = cli_admin_path(path, sizeof path, "volume", "/v1/volumes/", a->arg[0],
                       "/replicas");
    if (r < 0)
        return cli_fail(r);
    body = json_object_new_object();
    json_object_object_add(body, "count", json_object_new_int64(n));
    if (cli_value(a, "min"))
        json_object_object_add(body, "min", json_object_new_int64(min));
    r = cli_admin_call_json(&a->admin, "POST", path, body, &out);
    json_object_put(body);
    return cli_admin_finish(&a->admin, r, out, print_set);
}
