/* cluster info, cluster encryption enable|disable, cluster kek rotate|export:
 * the cluster-level KEK as Lightbits operators know it. */
#include "args.h"
#include "cli.h"
#include "client.h"
#include "core/error.h"
#include "luks/escrow.h"
#include "progress.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    if (cli_str(rot, "node")[0])
        printf("\nrotation node:           %s", cli_str(rot, "node"));
    if (cli_str(rot, "waiting")[0])
        printf("\nwaiting:                 %s", cli_str(rot, "waiting"));
    printf("\nvolumes:                 %lld\n", cli_int(o, "volumes"));
}

int cmd_cluster_info(struct cli_args *a)
{
    return cli_admin_get(a, "/v1/cluster", print_info);
}

static void print_enabled(json_object *out)
{
    printf("cluster encryption enabled: KEK generation %lld, protected by "
           "%s\n", cli_int(out, "currentKekGeneration"),
           cli_str(out, "kekProtection"));
}

int cmd_cluster_encryption_enable(struct cli_args *a)
{
    const char *protection = cli_value(a, "kek-protection");
    json_object *body, *out = NULL;
    int r;

    if (!protection)
        protection = "software";
    if (strcmp(protection, "tpm") && strcmp(protection, "software"))
        return cli_usage_error(a, "--kek-protection: \"%s\" (use tpm or "
                               "software)", protection);
    body = json_object_new_object();
    json_object_object_add(body, "kekProtection",
                           json_object_new_string(protection));
    r = cli_admin_call_json(&a->admin, "POST", "/v1/cluster/encryption", body,
                            &out);
    json_object_put(body);
    return cli_admin_finish(&a->admin, r, out, print_enabled);
}

int cmd_cluster_encryption_disable(struct cli_args *a)
{
    json_object *out = NULL;
    int r;

    r = cli_admin_call(&a->admin, "DELETE", "/v1/cluster/encryption", NULL, 0,
                       &out);
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
            progress_start_count(&p, "re-wrapping volume keys",
                                 (uint64_t)cli_int(rot, "volumesTotal"),
                                 "volumes");
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

int cmd_cluster_kek_rotate(struct cli_args *a)
{
    int no_wait = cli_flag(a, "no-wait"), r;
    json_object *out = NULL;
    long long gen;

    r = cli_admin_call(&a->admin, "POST", "/v1/cluster/kek/rotate", "{}", 2,
                       &out);
    if (r < 0)
        return cli_fail(r);
    gen = cli_int(out, "targetGeneration");
    json_object_put(out);
    if (!no_wait)
        r = wait_rotation(&a->admin, gen);
    if (r < 0)
        return cli_fail(r);
    if (!a->admin.json)
        printf("KEK rotation to generation %lld %s\n", gen,
               no_wait ? "started" : "finished");
    /* An escrow opens what it holds: generation gen is not in any made
     * before now, and the volumes no longer need the older ones. */
    fprintf(stderr, "cryptvol: note: escrows exported before hold no KEK "
            "generation %lld; once the rotation is done export a new one: "
            "cryptvol cluster kek export OUT --recovery-passphrase-file F\n",
            gen);
    return EXIT_OK;
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

int cmd_cluster_kek_export(struct cli_args *a)
{
    const char *passfile = cli_value(a, "recovery-passphrase-file");
    const char *path = a->arg[0];
    struct cv_secret pass = { 0 };
    json_object *out = NULL;
    int r, fd = -1;

    r = cli_read_passphrase(passfile, "recovery passphrase file", &pass);
    if (r == 0 && pass.len < CV_ESCROW_PASS_MIN)
        r = cv_error(-EINVAL, "recovery passphrase file %s: %zu bytes, at "
                     "least %d are needed", passfile, pass.len,
                     CV_ESCROW_PASS_MIN);
    if (r == 0)
        r = create_escrow_file(path, &fd);
    if (r == 0)
        r = cli_admin_call_secret(&a->admin, "POST", "/v1/cluster/kek/export", NULL,
                                  "recoveryPassphrase", &pass, &out);
    cv_secret_free(&pass);
    if (r == 0) {
        r = write_escrow(fd, path, cli_str(out, "escrow"));
    } else if (fd >= 0) {
        close(fd);
        unlink(path);   /* made above, empty */
    }
    json_object_put(out);
    if (r < 0)
        return cli_fail(r);
    printf("KEK escrow written to %s (keep it apart from the recovery "
           "passphrase)\n", path);
    return EXIT_OK;
}
