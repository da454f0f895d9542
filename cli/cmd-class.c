/* class create, list, info, delete: volume classes kept by cryptvold. */
#include "cli.h"
#include "client.h"
#include "core/error.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

/* Where a class's volumes get their secret, in words. */
static void secret_words(json_object *c, char *buf, size_t len)
{
    if (!cli_bool(c, "encrypted"))
        snprintf(buf, len, "-");
    else if (cli_str(c, "secret")[0])
        snprintf(buf, len, "%s (every volume)", cli_str(c, "secret"));
    else if (cli_str(c, "secret_template")[0])
        snprintf(buf, len, "%s (per volume)", cli_str(c, "secret_template"));
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
               cli_str(c, "cipher"), cli_int(c, "key_size") / 2,
               cli_int(c, "key_size"));
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
        snprintf(cipher, sizeof cipher, "AES-%lld", cli_int(c, "key_size") / 2);
        printf("%-*s  %-9s  %-10s  %-8lld  %s\n", w, cli_str(c, "name"),
               enc ? cli_str(c, "type") : "plaintext", enc ? cipher : "NONE",
               cli_int(c, "replicas"), secret);
    }
}

static int parse_create(int argc, char **argv, struct cli_admin *a,
                        json_object *body)
{
    static const struct option opts[] = {
        { "encrypted", no_argument, NULL, 'e' },
        { "secret", required_argument, NULL, 'S' },
        { "secret-template", required_argument, NULL, 'T' },
        { "type", required_argument, NULL, 't' },
        { "cipher", required_argument, NULL, 'c' },
        { "key-size", required_argument, NULL, 'k' },
        { "replicas", required_argument, NULL, 'r' },
        CLI_ADMIN_LONGOPTS,
        { 0 } };
    int c, secret = 0, tmpl = 0;
    uint32_t n;

#define ADD(k, v) json_object_object_add(body, k, v)
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'e': ADD("encrypted", json_object_new_boolean(1)); break;
        case 'S': ADD("secret", json_object_new_string(optarg)); secret = 1; break;
        case 'T': ADD("secret_template", json_object_new_string(optarg)); tmpl = 1; break;
        case 't': ADD("type", json_object_new_string(optarg)); break;
        case 'c': ADD("cipher", json_object_new_string(optarg)); break;
        case 'k':
        case 'r':
            if (cli_parse_u32(a->cmd, c == 'k' ? "key-size" : "replicas",
                              optarg, &n))
                return EXIT_USAGE;
            ADD(c == 'k' ? "key_size" : "replicas", json_object_new_int64(n));
            break;
        default:
            if (!cli_admin_option(a, c, optarg))
                return cli_bad_option(a->cmd, c, argv);
        }
    }
#undef ADD
    if (argc - optind != 1)
        return cli_usage(a->cmd, "needs NAME");
    if (secret && tmpl)
        return cli_usage(a->cmd, "--secret (one secret for every volume) or "
                         "--secret-template (one per volume), not both");
    json_object_object_add(body, "name", json_object_new_string(argv[optind]));
    return -1;
}

int cmd_class_create(int argc, char **argv)
{
    struct cli_admin a = { .cmd = "class create" };
    json_object *body = json_object_new_object(), *out = NULL;
    int r = parse_create(argc, argv, &a, body);

    if (r >= 0) {
        json_object_put(body);
        return r;
    }
    r = cli_admin_call_json(&a, "POST", "/v1/classes", body, &out);
    json_object_put(body);
    return cli_admin_finish(&a, r, out, print_info);
}

int cmd_class_list(int argc, char **argv)
{
    struct cli_admin a = { .cmd = "class list" };
    json_object *out = NULL;
    int r = cli_admin_args(&a, argc, argv, 0, "takes no arguments");

    if (r >= 0)
        return r;
    r = cli_admin_call(&a, "GET", "/v1/classes", NULL, 0, &out);
    return cli_admin_finish(&a, r, out, print_list);
}

static void print_deleted(json_object *c)
{
    printf("class %s deleted\n", cli_str(c, "name"));
}

int cmd_class_info(int argc, char **argv)
{
    return cli_admin_call_on_name(argc, argv, "class info", "GET",
                                  "class", "/v1/classes/", print_info);
}

int cmd_class_delete(int argc, char **argv)
{
    return cli_admin_call_on_name(argc, argv, "class delete", "DELETE",
                                  "class", "/v1/classes/", print_deleted);
}
