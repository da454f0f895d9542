/* secret create, list, update, delete: named secrets stored (sealed) by
 * cryptvold.  A value goes to the daemon and is never shown again. */
#include "args.h"
#include "cli.h"
#include "client.h"
#include "core/error.h"

#include <stdio.h>
#include <string.h>

/* "db1, db2" of an array of names, or "" (absent, empty). */
static void names(json_object *o, const char *key, char *buf, size_t len)
{
    json_object *a = NULL;
    size_t i, n, at = 0;

    buf[0] = '\0';
    json_object_object_get_ex(o, key, &a);
    n = a && json_object_is_type(a, json_type_array) ?
        json_object_array_length(a) : 0;
    for (i = 0; i < n && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? ", " : "",
                               json_object_get_string(
                                   json_object_array_get_idx(a, i)));
}

/* What a create did to the volumes waiting for the secret. */
static void print_created(json_object *out)
{
    char made[1024], still[1024];

    names(out, "madeAvailable", made, sizeof made);
    names(out, "stillPending", still, sizeof still);
    printf("secret %s created\n", cli_str(out, "name"));
    if (made[0])
        printf("volumes now Available: %s\n", made);
    if (still[0])
        cli_warn("volumes still Pending (the daemon log says why; they are "
                 "tried again): %s", still);
}

/* The volumes whose keyslots the new value does not open fail their next
 * attach: that is worth a warning even with --json. */
static void warn_update(json_object *out)
{
    char bad[1024];
    long long unchecked = cli_int(out, "unchecked");

    names(out, "doesNotOpen", bad, sizeof bad);
    if (bad[0])
        cli_warn("the new value of secret %s does not open volume%s %s: "
                 "the keyslot for it still holds the old value, so an "
                 "attach that needs the secret fails with \"wrong key\" "
                 "(put the old value back with secret update, then move "
                 "them to a new secret with volume rekey)",
                 cli_str(out, "name"), strchr(bad, ',') ? "s" : "", bad);
    if (unchecked > 0)
        cli_warn("%lld more volume%s using secret %s %s not checked",
                 unchecked, unchecked == 1 ? "" : "s", cli_str(out, "name"),
                 unchecked == 1 ? "was" : "were");
}

static void print_updated(json_object *out)
{
    printf("secret %s updated\n", cli_str(out, "name"));
}

/* secret create (POST) and update (PUT): NAME and --from-file F. */
static int send_value(struct cli_args *a, const char *method,
                      void (*print)(json_object *))
{
    struct cv_secret s = { 0 };
    json_object *out = NULL;
    char path[256] = "/v1/secrets";
    int r;

    r = strcmp(method, "PUT") ? 0 :
        cli_admin_path(path, sizeof path, "secret", "/v1/secrets/",
                       a->arg[0], "");
    if (r == 0)
        r = cli_read_passphrase(cli_value(a, "from-file"), "secret file", &s);
    if (r == 0)
        r = cli_admin_call_secret(&a->admin, method, path, a->arg[0], "value",
                                  &s, &out);
    cv_secret_free(&s);
    if (r == 0 && !strcmp(method, "PUT"))
        warn_update(out);
    return cli_admin_finish(&a->admin, r, out, print);
}

int cmd_secret_create(struct cli_args *a)
{
    return send_value(a, "POST", print_created);
}

/* Only the stored value changes: volumes keep their keyslots, so one whose
 * keyslot the new value does not open fails its next attach (the daemon
 * names them). */
int cmd_secret_update(struct cli_args *a)
{
    return send_value(a, "PUT", print_updated);
}

static void print_list(json_object *out)
{
    json_object *e, *used;
    size_t i, j, n = json_object_array_length(out);
    int w = 4;

    for (i = 0; i < n; i++) {
        int l = (int)strlen(cli_str(json_object_array_get_idx(out, i), "name"));
        w = l > w ? l : w;
    }
    printf("%-*s  %-20s  %s\n", w, "NAME", "CREATED", "USED BY");
    for (i = 0; i < n; i++) {
        e = json_object_array_get_idx(out, i);
        printf("%-*s  %-20s  ", w, cli_str(e, "name"), cli_str(e, "created"));
        used = NULL;
        json_object_object_get_ex(e, "usedBy", &used);
        for (j = 0; used && j < json_object_array_length(used); j++)
            printf("%s%s", j ? "," : "",
                   json_object_get_string(json_object_array_get_idx(used, j)));
        printf("%s\n", used && json_object_array_length(used) ? "" : "-");
    }
}

int cmd_secret_list(struct cli_args *a)
{
    return cli_admin_get(a, "/v1/secrets", print_list);
}

static void print_deleted(json_object *out)
{
    printf("secret %s deleted\n", cli_str(out, "name"));
}

int cmd_secret_delete(struct cli_args *a)
{
    return cli_admin_call_on_name(a, "DELETE", "/v1/secrets/", print_deleted);
}
