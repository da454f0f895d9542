/* cluster info, cluster encryption enable|disable, cluster kek rotate|export:
 * the cluster-level KEK as Lightbits operators know it. */
#include "cli.h"
#include "client.h"
#include "core/error.h"
#include "luks/escrow.h"
#include "progress.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Admin options plus the ones in extra (terminated by { 0 }); calls opt
 * for those.  Returns -1 to go on, else an exit status. */
static int parse(struct cli_admin *a, int argc, char **argv,
                 const struct option *extra, int (*opt)(int, const char *,
                                                        void *),
                 void *arg, int nargs, const char *usage)
{
    struct option opts[16] = { CLI_ADMIN_LONGOPTS };
    size_t n = 4, i;
    int c;

    for (i = 0; extra && extra[i].name && n < 15; i++)
        opts[n++] = extra[i];
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (cli_admin_option(a, c, optarg))
            continue;
        if (c < CLI_ADMIN_OPTS && c != '?' && c != ':' && opt &&
            opt(c, optarg, arg) == 0)
            continue;
        return cli_bad_option(a->cmd, c, argv);
    }
    if (argc - optind != nargs)
        return cli_usage(a->cmd, "%s", usage);
    return -1;
}

static void print_gens(json_object *o)
{
    json_object *g = NULL;
    size_t i, n;

    json_object_object_get_ex(o, "previousKekGenerations", &g);
    n = g ? json_object_array_length(g) : 0;
    for (i = 0; i < n; i++)
        printf("%s%s", i ? ", " : "",
               json_object_get_string(json_object_array_get_idx(g, i)));
    printf("%s\n", n ? "" : "none");
}

static void print_info(json_object *o)
{
    json_object *rot = NULL;

    json_object_object_get_ex(o, "rotation", &rot);
    printf("cluster:                 %s\n", cli_str(o, "clusterId")[0] ?
           cli_str(o, "clusterId") : "-");
    printf("node:                    %s\n", cli_str(o, "node"));
    printf("encryption:              %s\n", cli_str(o, "encryptionState"));
    printf("KEK protection:          %s\n", cli_str(o, "kekProtection")[0] ?
           cli_str(o, "kekProtection") : "-");
    printf("current KEK generation:  %lld\n",
           cli_int(o, "currentKekGeneration"));
    printf("previous generations:    ");
    print_gens(o);
    printf("rotation:                %s", cli_str(o, "rotationState"));
    if (strcmp(cli_str(o, "rotationState"), "NoRotation"))
        printf(" (to generation %lld: %lld of %lld volumes)",
               cli_int(rot, "targetGeneration"), cli_int(rot, "volumesDone"),
               cli_int(rot, "volumesTotal"));
    printf("\nvolumes:                 %lld\n", cli_int(o, "volumes"));
}

int cmd_cluster_info(int argc, char **argv)
{
    struct cli_admin a = { .cmd = "cluster info" };
    json_object *out = NULL;
    int r;

    r = cli_admin_args(&a, argc, argv, 0, "takes no arguments");
    if (r >= 0)
        return r;
    r = cli_admin_call(&a, "GET", "/v1/cluster", NULL, 0, &out);
    if (r < 0)
        return cli_fail(r);
    if (a.json)
        cli_print_json(out);
    else
        print_info(out);
    json_object_put(out);
    return EXIT_OK;
}

static int protection_opt(int c, const char *val, void *arg)
{
    if (c != 'p')
        return -1;
    *(const char **)arg = val;
    return 0;
}

int cmd_cluster_encryption_enable(int argc, char **argv)
{
    static const struct option extra[] = {
        { "kek-protection", required_argument, NULL, 'p' }, { 0 } };
    struct cli_admin a = { .cmd = "cluster encryption enable" };
    const char *protection = "software";
    json_object *body, *out = NULL;
    int r;

    r = parse(&a, argc, argv, extra, protection_opt, &protection, 0,
              "takes [--kek-protection tpm|software]");
    if (r >= 0)
        return r;
    if (strcmp(protection, "tpm") && strcmp(protection, "software"))
        return cli_usage(a.cmd, "--kek-protection is tpm or software");
    body = json_object_new_object();
    json_object_object_add(body, "kekProtection",
                           json_object_new_string(protection));
    r = cli_admin_call_json(&a, "POST", "/v1/cluster/encryption", body, &out);
    json_object_put(body);
    if (r < 0)
        return cli_fail(r);
    if (a.json)
        cli_print_json(out);
    else
        printf("cluster encryption enabled: KEK generation %lld, protected "
               "by %s\n", cli_int(out, "currentKekGeneration"),
               cli_str(out, "kekProtection"));
    json_object_put(out);
    return EXIT_OK;
}

int cmd_cluster_encryption_disable(int argc, char **argv)
{
    struct cli_admin a = { .cmd = "cluster encryption disable" };
    json_object *out = NULL;
    int r;

    r = cli_admin_args(&a, argc, argv, 0, "takes no arguments");
    if (r >= 0)
        return r;
    r = cli_admin_call(&a, "DELETE", "/v1/cluster/encryption", NULL, 0, &out);
    json_object_put(out);
    return r < 0 ? cli_fail(r) : EXIT_OK;
}

/* Follows a rotation until NoRotation, showing volumes done of total on a
 * terminal. */
static int wait_rotation(struct cli_admin *a, long long gen)
{
    struct timespec ts = { 0, 100 * 1000 * 1000 };
    struct progress p;
    json_object *o = NULL, *rot;
    int r, started = 0, done = 0;

    while (!done) {
        r = cli_admin_call(a, "GET", "/v1/cluster", NULL, 0, &o);
        if (r < 0)
            break;
        rot = NULL;
        json_object_object_get_ex(o, "rotation", &rot);
        if (!started && cli_int(rot, "volumesTotal")) {
            progress_start(&p, "re-wrapping volume keys",
                           (uint64_t)cli_int(rot, "volumesTotal"));
            started = 1;
        }
        if (started)
            progress_update(&p, (uint64_t)cli_int(rot, "volumesDone"));
        done = !strcmp(cli_str(o, "rotationState"), "NoRotation") &&
               cli_int(o, "currentKekGeneration") >= gen;
        if (done && cli_int(rot, "volumesFailed"))
            r = cv_error(-EIO, "rotation to KEK generation %lld finished, "
                         "but %lld volumes stay at older generations (see "
                         "the daemon log; a next rotation retries them)",
                         gen, cli_int(rot, "volumesFailed"));
        json_object_put(o);
        o = NULL;
        if (!done)
            nanosleep(&ts, NULL);
    }
    if (started)
        progress_end(&p, r == 0);
    return r;
}

static int no_wait_opt(int c, const char *val, void *arg)
{
    (void)val;
    if (c != 'n')
        return -1;
    *(int *)arg = 1;
    return 0;
}

int cmd_cluster_kek_rotate(int argc, char **argv)
{
    static const struct option extra[] = {
        { "no-wait", no_argument, NULL, 'n' }, { 0 } };
    struct cli_admin a = { .cmd = "cluster kek rotate" };
    json_object *out = NULL;
    long long gen;
    int r, no_wait = 0;

    r = parse(&a, argc, argv, extra, no_wait_opt, &no_wait, 0,
              "takes [--no-wait]");
    if (r >= 0)
        return r;
    r = cli_admin_call(&a, "POST", "/v1/cluster/kek/rotate", "{}", 2, &out);
    if (r < 0)
        return cli_fail(r);
    gen = cli_int(out, "targetGeneration");
    json_object_put(out);
    if (!no_wait)
        r = wait_rotation(&a, gen);
    if (r < 0)
        return cli_fail(r);
    if (!a.json)
        printf("KEK rotation to generation %lld %s\n", gen,
               no_wait ? "started" : "finished");
    return EXIT_OK;
}

static int passfile_opt(int c, const char *val, void *arg)
{
    if (c != 'f')
        return -1;
    *(const char **)arg = val;
    return 0;
}

/* The escrow holds no clear key, but it is what opens every volume with
 * the recovery passphrase: 0600, never over an existing file.  Made before
 * the daemon is asked, so an output that cannot be written costs no escrow
 * leaving the daemon (and no kek.export in its audit log). */
static int create_escrow_file(const char *path, int *fd)
{
    *fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
               0600);
    if (*fd < 0)
        return cv_error(-errno, "%s: cannot create the escrow file: %s "
                        "(nothing was asked of the daemon)", path,
                        strerror(errno));
    return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
    ssize_t w;

    while (len) {
        w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Writes and syncs the escrow; on failure the file goes and the message
 * says that the daemon did send it (its audit log says so). */
static int write_escrow(int fd, const char *path, const char *text)
{
    int r = text ? write_all(fd, text, strlen(text)) : -EPROTO;

    if (r == 0)
        r = write_all(fd, "\n", 1);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0)
        return 0;
    unlink(path);
    return cv_error(r, "%s: writing the escrow: %s; the daemon sent it "
                    "(its audit log says \"sent to the client\"), but it is "
                    "not saved: export it again", path, strerror(-r));
}

int cmd_cluster_kek_export(int argc, char **argv)
{
    static const struct option extra[] = {
        { "recovery-passphrase-file", required_argument, NULL, 'f' }, { 0 } };
    struct cli_admin a = { .cmd = "cluster kek export" };
    const char *passfile = NULL;
    struct cv_secret pass = { 0 };
    json_object *out = NULL;
    int r, fd = -1;

    r = parse(&a, argc, argv, extra, passfile_opt, &passfile, 1,
              "needs OUT and --recovery-passphrase-file F");
    if (r >= 0)
        return r;
    if (!passfile)
        return cli_usage(a.cmd, "needs --recovery-passphrase-file F");
    r = cli_read_passphrase(passfile, "recovery passphrase file", &pass);
    if (r == 0 && pass.len < CV_ESCROW_PASS_MIN)
        r = cv_error(-EINVAL, "recovery passphrase file %s: %zu bytes, at "
                     "least %d are needed", passfile, pass.len,
                     CV_ESCROW_PASS_MIN);
    if (r == 0)
        r = create_escrow_file(argv[optind], &fd);
    if (r == 0)
        r = cli_admin_call_secret(&a, "POST", "/v1/cluster/kek/export", NULL,
                                  "recoveryPassphrase", &pass, &out);
    cv_secret_free(&pass);
    if (r == 0) {
        r = write_escrow(fd, argv[optind], cli_str(out, "escrow"));
    } else if (fd >= 0) {
        close(fd);
        unlink(argv[optind]);   /* made above, empty */
    }
    json_object_put(out);
    if (r < 0)
        return cli_fail(r);
    printf("KEK escrow written to %s (keep it apart from the recovery "
           "passphrase)\n", argv[optind]);
    return EXIT_OK;
}
