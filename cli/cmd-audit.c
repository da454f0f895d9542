/* audit [--since T]: cryptvold's audit log of key events (GET /v1/audit),
 * as a table or the API's JSON.  T goes to the daemon as typed, so that
 * "10m" means ten minutes on the daemon's clock. */
#include "args.h"
#include "cli.h"
#include "client.h"
#include "core/error.h"

#include <stdio.h>
#include <string.h>

#define SINCE_MAX 64

/* RFC 3986 percent-encoding of a query value: "+01:00" must not arrive as
 * " 01:00". */
static void escape(const char *in, char *out)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *in; in++) {
        unsigned char c = (unsigned char)*in;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
            (c >= '0' && c <= '9') || strchr("-._~", c)) {
            *out++ = (char)c;
        } else {
            *out++ = '%';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        }
    }
    *out = '\0';
}

static const char *const columns[] = { "time", "node", "actor", "event",
                                       "object", "result" };
#define NCOLUMNS (sizeof columns / sizeof columns[0])

/* TIME NODE ACTOR EVENT OBJECT RESULT DETAIL, each column as wide as its
 * widest value; DETAIL last, as long as it is. */
static void print_table(json_object *events)
{
    static const char *const heads[] = { "TIME", "NODE", "ACTOR", "EVENT",
                                         "OBJECT", "RESULT" };
    size_t n = json_object_array_length(events), i, c;
    int w[NCOLUMNS];
    json_object *e;
    const char *detail;

    for (c = 0; c < NCOLUMNS; c++) {
        w[c] = (int)strlen(heads[c]);
        for (i = 0; i < n; i++) {
            int l = (int)strlen(cli_str(json_object_array_get_idx(events, i),
                                        columns[c]));
            w[c] = l > w[c] ? l : w[c];
        }
    }
    for (c = 0; c < NCOLUMNS; c++)
        printf("%-*s  ", w[c], heads[c]);
    printf("DETAIL\n");
    for (i = 0; i < n; i++) {
        e = json_object_array_get_idx(events, i);
        for (c = 0; c < NCOLUMNS; c++)
            printf("%-*s  ", w[c], cli_str(e, columns[c]));
        detail = cli_str(e, "detail");
        printf("%s\n", detail[0] ? detail : "-");
    }
}

int cmd_audit(struct cli_args *a)
{
    char path[32 + 3 * SINCE_MAX] = "/v1/audit";
    const char *since = cli_value(a, "since");
    json_object *out = NULL, *events = NULL;
    long long skipped;
    int r;

    if (since && (!since[0] || strlen(since) > SINCE_MAX))
        return cli_usage_error(a, "--since: \"%.64s\" is not a time (use "
                               "epoch seconds, 2026-11-23T10:00:00Z, or an "
                               "age such as 10m, 2h, 1d)", since);
    if (since) {
        strcat(path, "?since=");
        escape(since, path + strlen(path));
    }
    r = cli_admin_call(&a->admin, "GET", path, NULL, 0, &out);
    if (r < 0)
        return cli_fail(r);
    if (a->admin.json) {
        cli_print_json(out);
        json_object_put(out);
        return EXIT_OK;
    }
    json_object_object_get_ex(out, "events", &events);
    if (events && json_object_is_type(events, json_type_array))
        print_table(events);
    skipped = cli_int(out, "skipped");
    if (skipped > 0)
        fprintf(stderr, "cryptvol: %lld line%s of the audit log %s not a "
                "whole event (torn by a crash?) and %s skipped\n", skipped,
                skipped == 1 ? "" : "s", skipped == 1 ? "is" : "are",
                skipped == 1 ? "was" : "were");
    json_object_put(out);
    return EXIT_OK;
}
