/* secret create, list, update, delete: named secrets stored (sealed) by
 * cryptvold.  A value goes to the daemon and is never shown again. */
#include "cli.h"
#include "client.h"
#include "core/error.h"
#include "core/secmem.h"

#include <errno.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Parses the options every secret command takes plus --from-file for
 * create and update; returns -1 on success (continue), else an exit
 * status. */
static int parse(struct cli_admin *a, int argc, char **argv,
                 const char **from_file, int nargs, const char *usage)
{
    static const struct option opts[] = {
        { "from-file", required_argument, NULL, 'f' },
        CLI_ADMIN_LONGOPTS,
        { 0 } };
    int c;

    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == 'f' && from_file)
            *from_file = optarg;
        else if (!cli_admin_option(a, c, optarg))
            return cli_bad_option(a->cmd, c, argv);
    }
    if (argc - optind != nargs || (from_file && !*from_file))
        return cli_usage(a->cmd, "%s", usage);
    return -1;
}

/* secret create (POST) and update (PUT): NAME and --from-file F. */
static int send_value(int argc, char **argv, const char *cmd,
                      const char *method, const char *done)
{
    struct cli_admin a = { .cmd = cmd };
    const char *from = NULL;
    struct cv_secret s = { 0 };
    json_object *out = NULL;
    char path[256] = "/v1/secrets";
    int r;

    r = parse(&a, argc, argv, &from, 1, "needs NAME and --from-file F");
    if (r >= 0)
        return r;
    r = strcmp(method, "PUT") ? 0 :
        cli_admin_path(path, sizeof path, "secret", "/v1/secrets/",
                       argv[optind], "");
    if (r == 0)
        r = cli_read_passphrase(from, "secret file", &s);
    if (r == 0)
        r = cli_admin_call_secret(&a, method, path, argv[optind], "value",
                                  &s, &out);
    cv_secret_free(&s);
    if (r < 0)
        return cli_fail(r);
    if (a.json)
        cli_print_json(out);
    else
        printf("secret %s %s\n", cli_str(out, "name"), done);
    json_object_put(out);
    return EXIT_OK;
}

int cmd_secret_create(int argc, char **argv)
{
    return send_value(argc, argv, "secret create", "POST", "created");
}

/* Only the stored value changes: volumes keep their keyslots, so one whose
 * keyslot the new value does not open fails its next attach. */
int cmd_secret_update(int argc, char **argv)
{
    return send_value(argc, argv, "secret update", "PUT", "updated");
}

int cmd_secret_list(int argc, char **argv)
{
    struct cli_admin a = { .cmd = "secret list" };
    json_object *out = NULL, *e, *used;
    size_t i, j, n;
    int r, w = 4;

    r = parse(&a, argc, argv, NULL, 0, "takes no arguments");
    if (r >= 0)
        return r;
    r = cli_admin_call(&a, "GET", "/v1/secrets", NULL, 0, &out);
    if (r < 0)
        return cli_fail(r);
    if (a.json) {
        cli_print_json(out);
        json_object_put(out);
        return EXIT_OK;
    }
    n = json_object_array_length(out);
    for (i = 0; i < n; i++) {
        int l = (int)strlen(cli_str(json_object_array_get_idx(out, i), "name"));
        w = l > w ? l : w;
    }
    printf("%-*s  %-20s  %s\n", w, "NAME", "CREATED", "USED BY");
    for (i = 0; i < n; i++) {
        e = json_object_array_get_idx(out, i);
        printf("%-*s  %-20s  ", w, cli_str(e, "name"), cli_str(e, "created"));
        json_object_object_get_ex(e, "used_by", &used);
        for (j = 0; used && j < json_object_array_length(used); j++)
            printf("%s%s", j ? "," : "",
                   json_object_get_string(json_object_array_get_idx(used, j)));
        printf("%s\n", used && json_object_array_length(used) ? "" : "-");
    }
    json_object_put(out);
    return EXIT_OK;
}

int cmd_secret_delete(int argc, char **argv)
{
    struct cli_admin a = { .cmd = "secret delete" };
    json_object *out = NULL;
    char path[256];
    int r;

    r = parse(&a, argc, argv, NULL, 1, "needs NAME");
    if (r >= 0)
        return r;
    r = cli_admin_path(path, sizeof path, "secret", "/v1/secrets/",
                       argv[optind], "");
    if (r == 0)
        r = cli_admin_call(&a, "DELETE", path, NULL, 0, &out);
    if (r < 0)
        return cli_fail(r);
    if (a.json)
        cli_print_json(out);
    else
        printf("secret %s deleted\n", argv[optind]);
    json_object_put(out);
    return EXIT_OK;
}
