/* class create, list, info, delete: volume classes kept by cryptvold. */
#include "args.h"
#include "cli.h"
#include "client.h"
#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Where a class's volumes get their secret, in words. */
static void secret_words(json_object *c, char *buf, size_t len)
{
    if (!cli_bool(c, "encrypted"))
        snprintf(buf, len, "-");
    else if (cli_str(c, "secret")[0])
        snprintf(buf, len, "%s (every volume)", cli_str(c, "secret"));
    else if (cli_str(c, "secretTemplate")[0])
        snprintf(buf, len, "%s (per volume)", cli_str(c, "secretTemplate"));
    else
        snprintf(buf, len, "generated per volume");
}

static void print_info(json_object *c)
{
    json_object *access;
    char secret[256];

    secret_words(c, secret, sizeof secret);
    printf("name:         %s\n", cli_str(c, "name"));
    if (!cli_bool(c, "encrypted")) {
        printf("encryption:   NONE (its volumes are plaintext)\n");
    } else {
        printf("secret:       %s\n", secret);
        printf("type:         %s\n", cli_str(c, "type"));
        printf("cipher:       %s (AES-%lld, %lld-bit XTS key)\n",
               cli_str(c, "cipher"), cli_int(c, "keyBits") / 2,
               cli_int(c, "keyBits"));
    }
    printf("replicas:     %lld\n", cli_int(c, "replicas"));
    printf("created:      %s\n", cli_str(c, "created"));
    if (json_object_object_get_ex(c, "access", &access) && access) {
        printf("nbd access:\n");
        cli_print_access(access, "  ");
    }
}

static void print_list(json_object *out)
{
    size_t i, n = json_object_array_length(out);
    char secret[256], cipher[32];
    int w = 4, l;

    for (i = 0; i < n; i++) {
        l = (int)strlen(cli_str(json_object_array_get_idx(out, i), "name"));
        w = l > w ? l : w;
    }
    printf("%-*s  %-9s  %-10s  %-8s  %s\n", w, "NAME", "TYPE", "ENCRYPTION",
           "REPLICAS", "SECRET");
    for (i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(out, i);
        int enc = cli_bool(c, "encrypted");

        secret_words(c, secret, sizeof secret);
        snprintf(cipher, sizeof cipher, "AES-%lld", cli_int(c, "keyBits") / 2);
        printf("%-*s  %-9s  %-10s  %-8lld  %s\n", w, cli_str(c, "name"),
               enc ? cli_str(c, "type") : "plaintext", enc ? cipher : "NONE",
               cli_int(c, "replicas"), secret);
    }
}

static int parse_create(struct cli_args *a, json_object *body)
{
    static const char *const strings[][2] = {
        { "secret", "secret" }, { "secret-template", "secretTemplate" },
        { "type", "type" }, { "cipher", "cipher" } };
    static const char *const numbers[][2] = {
        { "key-size", "keyBits" }, { "replicas", "replicas" } };
    uint32_t n;
    size_t i;

    if (cli_value(a, "secret") && cli_value(a, "secret-template"))
        return cli_usage_error(a, "--secret (one secret for every volume) or "
                               "--secret-template (one per volume), not both");
    if (cli_flag(a, "encrypted"))
        json_object_object_add(body, "encrypted", json_object_new_boolean(1));
    for (i = 0; i < sizeof strings / sizeof strings[0]; i++)
        if (cli_value(a, strings[i][0]))
            json_object_object_add(body, strings[i][1], json_object_new_string(
                                       cli_value(a, strings[i][0])));
    for (i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        if (!cli_value(a, numbers[i][0]))
            continue;
        if (cli_u32_value(a, numbers[i][0], &n))
            return EXIT_USAGE;
        json_object_object_add(body, numbers[i][1], json_object_new_int64(n));
    }
    json_object_object_add(body, "name", json_object_new_string(a->arg[0]));
    return -1;
}

int cmd_class_create(struct cli_args *a)
{
    json_object *body = json_object_new_object(), *out = NULL;
    int r = parse_create(a, body);

    if (r >= 0) {
        json_object_put(body);
        return r;
    }
    r = cli_admin_call_json(&a->admin, "POST", "/v1/classes", body, &out);
    json_object_put(body);
    return cli_admin_finish(&a->admin, r, out, print_info);
}

int cmd_class_list(struct cli_args *a)
{
    return cli_admin_get(a, "/v1/classes", print_list);
}

static void print_deleted(json_object *c)
{
    printf("class %s deleted\n", cli_str(c, "name"));
}

int cmd_class_info(struct cli_args *a)
{
    return cli_admin_call_on_name(a, "GET", "/v1/classes/", print_info);
}

int cmd_class_delete(struct cli_args *a)
{
    return cli_admin_call_on_name(a, "DELETE", "/v1/classes/", print_deleted);
}
