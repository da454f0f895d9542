/* volume create, list, info, resize, rekey, delete: volumes managed by
 * cryptvold. */
#include "cli.h"
#include "client.h"
#include "core/error.h"
#include "core/size.h"
#include "progress.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* "deriving a key for the secret of class NAME", NAME up to 64. */
#define CLI_NAME_LABEL 128

static void print_info(json_object *v)
{
    char a[32];
    long long size = cli_int(v, "size");
    json_object *access;

    printf("name:         %s\n", cli_str(v, "name"));
    printf("size:         %lld (%s)\n", size,
           cv_format_size((uint64_t)size, a, sizeof a));
    if (!cli_bool(v, "encrypted")) {
        printf("encryption:   NONE (plaintext volume, for comparison only)\n");
    } else {
        printf("type:         %s\n", cli_str(v, "type"));
        /* None yet while Pending: there is no header. */
        if (cli_str(v, "uuid")[0])
            printf("uuid:         %s\n", cli_str(v, "uuid"));
        printf("cipher:       %s (AES-%lld, %lld-bit XTS key)\n",
               cli_str(v, "cipher"), cli_int(v, "key_bits") / 2,
               cli_int(v, "key_bits"));
        printf("secret:       %s\n", cli_str(v, "secret"));
        if (cli_str(v, "uuid")[0])
            printf("data offset:  %lld\n", cli_int(v, "data_offset"));
    }
    if (cli_str(v, "class")[0])
        printf("class:        %s\n", cli_str(v, "class"));
    printf("sector size:  %lld\n", cli_int(v, "sector_size"));
    printf("in use:       %s\n", cli_bool(v, "in_use") ? "yes" : "no");
    if (cli_str(v, "reason")[0])
        printf("state:        %s (%s)\n", cli_str(v, "state"),
               cli_str(v, "reason"));
    else
        printf("state:        %s\n", cli_str(v, "state"));
    printf("path:         %s\n", cli_str(v, "path"));
    printf("created:      %s\n", cli_str(v, "created"));
    if (json_object_object_get_ex(v, "access", &access) && access) {
        printf("nbd access:\n");
        cli_print_access(access, "  ");
    }
}

static int parse_create(int argc, char **argv, struct cli_admin *a,
                        json_object *body)
{
    static const struct option opts[] = {
        { "size", required_argument, NULL, 's' },
        { "secret", required_argument, NULL, 'S' },
        { "type", required_argument, NULL, 't' },
        { "cipher", required_argument, NULL, 'c' },
        { "plaintext", no_argument, NULL, 'p' },
        { "class", required_argument, NULL, 'C' },
        CLI_PBKDF_LONGOPTS,
        CLI_ADMIN_LONGOPTS,
        { 0 } };
    struct cv_pbkdf pbkdf = { 0 };
    int c, have_size = 0, have_pbkdf = 0;
    uint64_t size;

#define ADD(k, v) json_object_object_add(body, k, v)
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (cli_parse_size(a->cmd, "size", optarg, &size))
                return EXIT_USAGE;
            ADD("size", json_object_new_int64((int64_t)size));
            have_size = 1;
            break;
        case 'S': ADD("secret", json_object_new_string(optarg)); break;
        case 't': ADD("type", json_object_new_string(optarg)); break;
        case 'c': ADD("cipher", json_object_new_string(optarg)); break;
        case 'p': ADD("plaintext", json_object_new_boolean(1)); break;
        case 'C': ADD("class", json_object_new_string(optarg)); break;
        default:
            if (cli_admin_option(a, c, optarg))
                break;
            if (c < CLI_PBKDF_OPTS || c > CLI_PBKDF_OPTS + 3)
                return cli_bad_option(a->cmd, c, argv);
            if (cli_pbkdf_option(a->cmd, c, optarg, &pbkdf))
                return EXIT_USAGE;
            have_pbkdf = 1;
        }
    }
    if (argc - optind != 1 || !have_size)
        return cli_usage(a->cmd, "needs NAME and --size SIZE");
    ADD("name", json_object_new_string(argv[optind]));
    if (have_pbkdf) {
        json_object *p = json_object_new_object();
        if (pbkdf.type)
            json_object_object_add(p, "type", json_object_new_string(pbkdf.type));
        if (pbkdf.iterations)
            json_object_object_add(p, "iterations", json_object_new_int64(pbkdf.iterations));
        if (pbkdf.memory_kib)
            json_object_object_add(p, "memory_kib", json_object_new_int64(pbkdf.memory_kib));
        if (pbkdf.time_ms)
            json_object_object_add(p, "time_ms", json_object_new_int64(pbkdf.time_ms));
        ADD("pbkdf", p);
    }
#undef ADD
    return -1;
}

/* Whether the create makes a keyslot for a user's secret with the daemon's
 * key derivation, which is slow on purpose (cryptsetup's argon2id takes
 * seconds): then a terminal is told, while it waits.  A generated secret
 * (no secret, or a class without one) gets PBKDF2 at its minimum cost, as
 * does an explicit --pbkdf pbkdf2.  A class is asked for its secret only
 * on a terminal, where the notice shows. */
static int derives_key(struct cli_admin *a, json_object *body, char *label,
                       size_t len)
{
    json_object *v, *cls = NULL;
    char path[256];
    int slow = 0;

    if (json_object_object_get_ex(body, "pbkdf", &v) &&
        !strcmp(cli_str(v, "type"), "pbkdf2"))
        return 0;
    if (cli_str(body, "secret")[0]) {
        snprintf(label, len, "deriving a key for secret %s",
                 cli_str(body, "secret"));
        return 1;
    }
    if (!cli_str(body, "class")[0] || !isatty(STDERR_FILENO) ||
        cli_admin_path(path, sizeof path, "class", "/v1/classes/",
                       cli_str(body, "class"), "") < 0 ||
        cli_admin_call(a, "GET", path, NULL, 0, &cls) < 0) {
        cv_clear_error();       /* the create itself will say what is wrong */
        return 0;
    }
    if (cli_str(cls, "secret")[0] || cli_str(cls, "secret_template")[0]) {
        snprintf(label, len, "deriving a key for the secret of class %s",
                 cli_str(body, "class"));
        slow = 1;
    }
    json_object_put(cls);
    return slow;
}

int cmd_volume_create(int argc, char **argv)
{
    struct cli_admin a = { .cmd = "volume create" };
    json_object *body = json_object_new_object(), *out = NULL;
    struct progress prog;
    char label[CLI_NAME_LABEL];
    int r, kdf;

    r = parse_create(argc, argv, &a, body);
    if (r >= 0) {
        json_object_put(body);
        return r;
    }
    kdf = derives_key(&a, body, label, sizeof label);
    if (kdf) {
        progress_start(&prog, label, 0);
        progress_tick(&prog);
    }
    r = cli_admin_call_json(&a, "POST", "/v1/volumes", body, &out);
    if (kdf)
        progress_end(&prog, r == 0);
    json_object_put(body);
    return cli_admin_finish(&a, r, out, print_info);
}

static void print_list(json_object *out)
{
    size_t i, n = json_object_array_length(out);
    int w = 4, ws = 6, l;
    char sz[32];

    for (i = 0; i < n; i++) {
        json_object *v = json_object_array_get_idx(out, i);
        l = (int)strlen(cli_str(v, "name"));
        w = l > w ? l : w;
        l = (int)strlen(cli_str(v, "secret"));
        ws = l > ws ? l : ws;
    }
    printf("%-*s  %10s  %-9s  %-10s  %-*s  %-9s  %s\n", w, "NAME", "SIZE",
           "TYPE", "ENCRYPTION", ws, "SECRET", "STATE", "IN USE");
    for (i = 0; i < n; i++) {
        json_object *v = json_object_array_get_idx(out, i);
        int enc = cli_bool(v, "encrypted");
        char cipher[32];

        snprintf(cipher, sizeof cipher, "AES-%lld", cli_int(v, "key_bits") / 2);
        printf("%-*s  %10s  %-9s  %-10s  %-*s  %-9s  %s\n", w,
               cli_str(v, "name"),
               cv_format_size((uint64_t)cli_int(v, "size"), sz, sizeof sz),
               cli_str(v, "type"), enc ? cipher : "NONE", ws,
               enc ? cli_str(v, "secret") : "-", cli_str(v, "state"),
               cli_bool(v, "in_use") ? "yes" : "no");
    }
}

int cmd_volume_list(int argc, char **argv)
{
    struct cli_admin a = { .cmd = "volume list" };
    json_object *out = NULL;
    int r = cli_admin_args(&a, argc, argv, 0, "takes no arguments");

    if (r >= 0)
        return r;
    r = cli_admin_call(&a, "GET", "/v1/volumes", NULL, 0, &out);
    return cli_admin_finish(&a, r, out, print_list);
}

int cmd_volume_info(int argc, char **argv)
{
    return cli_admin_call_on_name(argc, argv, "volume info", "GET",
                                  "volume", "/v1/volumes/", print_info);
}

static void print_resized(json_object *v)
{
    char a[32];

    printf("volume %s: size %lld (%s)\n", cli_str(v, "name"),
           cli_int(v, "size"), cv_format_size((uint64_t)cli_int(v, "size"),
                                              a, sizeof a));
}

int cmd_volume_resize(int argc, char **argv)
{
    static const struct option opts[] = {
        { "size", required_argument, NULL, 's' },
        { "allow-shrink", no_argument, NULL, 'a' },
        CLI_ADMIN_LONGOPTS,
        { 0 } };
    struct cli_admin a = { .cmd = "volume resize" };
    json_object *body, *out = NULL;
    uint64_t size = 0;
    int c, r, have_size = 0, shrink = 0;
    char path[256];

    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == 's') {
            if (cli_parse_size(a.cmd, "size", optarg, &size))
                return EXIT_USAGE;
            have_size = 1;
        } else if (c == 'a') {
            shrink = 1;
        } else if (!cli_admin_option(&a, c, optarg)) {
            return cli_bad_option(a.cmd, c, argv);
        }
    }
    if (argc - optind != 1 || !have_size)
        return cli_usage(a.cmd, "needs NAME and --size SIZE");
    r = cli_admin_path(path, sizeof path, "volume", "/v1/volumes/",
                       argv[optind], "/resize");
    if (r < 0)
        return cli_fail(r);
    body = json_object_new_object();
    json_object_object_add(body, "size", json_object_new_int64((int64_t)size));
    if (shrink)
        json_object_object_add(body, "allow_shrink", json_object_new_boolean(1));
    r = cli_admin_call_json(&a, "POST", path, body, &out);
    json_object_put(body);
    return cli_admin_finish(&a, r, out, print_resized);
}

static void print_rekeyed(json_object *v)
{
    printf("volume %s: now unlocked by secret %s\n", cli_str(v, "name"),
           cli_str(v, "secret"));
}

int cmd_volume_rekey(int argc, char **argv)
{
    static const struct option opts[] = {
        { "secret", required_argument, NULL, 'S' },
        CLI_ADMIN_LONGOPTS,
        { 0 } };
    struct cli_admin a = { .cmd = "volume rekey" };
    json_object *body, *out = NULL;
    const char *secret = NULL;
    struct progress prog;
    char path[256], label[CLI_NAME_LABEL];
    int c, r;

    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == 'S')
            secret = optarg;
        else if (!cli_admin_option(&a, c, optarg))
            return cli_bad_option(a.cmd, c, argv);
    }
    if (argc - optind != 1 || !secret)
        return cli_usage(a.cmd, "needs NAME and --secret NEW");
    r = cli_admin_path(path, sizeof path, "volume", "/v1/volumes/",
                       argv[optind], "/rekey");
    if (r < 0)
        return cli_fail(r);
    body = json_object_new_object();
    json_object_object_add(body, "secret", json_object_new_string(secret));
    /* The new keyslot gets the daemon's (slow) key derivation. */
    snprintf(label, sizeof label, "deriving a key for secret %s", secret);
    progress_start(&prog, label, 0);
    progress_tick(&prog);
    r = cli_admin_call_json(&a, "POST", path, body, &out);
    progress_end(&prog, r == 0);
    json_object_put(body);
    return cli_admin_finish(&a, r, out, print_rekeyed);
}

static void print_deleted(json_object *v)
{
    printf("volume %s deleted\n", cli_str(v, "name"));
}

int cmd_volume_delete(int argc, char **argv)
{
    return cli_admin_call_on_name(argc, argv, "volume delete", "DELETE",
                                  "volume", "/v1/volumes/", print_deleted);
}
