/* backup target, create, list, verify, restore, delete: encrypted backups
 * of volumes to the daemon's backup target (docs/backup.md,
 * docs/admin-api.md "Backups").
 *
 * A backup create is followed in GET /v1/backups/ID (its state and
 * progress live in its manifest, which every daemon sharing the target
 * sees); a restore is a new volume, followed in its job as an import is
 * (job.c).  Interrupting either wait leaves the work going on in the
 * daemon. */
#include "args.h"
#include "cli.h"
#include "client.h"
#include "core/error.h"
#include "core/size.h"
#include "progress.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define ADD(o, k, v) json_object_object_add(o, k, v)
/* As job.c: a short backup is seen done at once, a long one costs the
 * daemon five requests a second. */
#define POLL_FIRST_NS (20 * 1000 * 1000L)
#define POLL_MAX_NS (200 * 1000 * 1000L)
#define ID_LEN 19               /* "bk-" and 16 hex digits */
#define LABEL_MAX 192

/* A backup id as the daemon makes them, checked before it is put in a
 * URL; a volume name given in its place is the likely mistake. */
static int check_id(const char *id)
{
    if (strlen(id) == ID_LEN && !strncmp(id, "bk-", 3) &&
        strspn(id + 3, "0123456789abcdef") == ID_LEN - 3)
        return 0;
    return cv_error(-EINVAL, "backup \"%.64s\": not a backup id (bk- and 16 "
                    "lower-case hex digits, as cryptvol backup list shows "
                    "them)", id);
}

/* "/v1/backups/ID" and suffix. */
static int backup_path(char *buf, size_t len, const char *id,
                       const char *suffix)
{
    int r = check_id(id);

    if (r == 0)
        snprintf(buf, len, "/v1/backups/%s%s", id, suffix);
    return r;
}

/* An optional name option (--secret, --class) checked as a name of what,
 * then added to body. */
static int add_name(const struct cli_args *a, json_object *body,
                    const char *opt, const char *what)
{
    const char *v = cli_value(a, opt);
    char scratch[128];
    int r;

    if (!v)
        return 0;
    r = cli_admin_path(scratch, sizeof scratch, what, "", v, "");
    if (r == 0)
        ADD(body, opt, json_object_new_string(v));
    return r;
}

static const char *size_words(json_object *o, const char *key, char *buf,
                              size_t len)
{
    return cv_format_size((uint64_t)cli_int(o, key), buf, len);
}

/* ---- backup target ---------------------------------------------------- */

static void print_target(json_object *o)
{
    char bytes[32], free_[32];

    printf("backup target %s\n", cli_str(o, "path"));
    printf("backups:  %lld\n", cli_int(o, "backups"));
    printf("blocks:   %lld (%s)\n", cli_int(o, "blocks"),
           size_words(o, "bytes", bytes, sizeof bytes));
    printf("free:     %s\n", size_words(o, "freeBytes", free_, sizeof free_));
}

int cmd_backup_target(struct cli_args *a)
{
    return cli_admin_get(a, "/v1/backup/target", print_target);
}

/* ---- backup create: following the backup ------------------------------ */

struct follow {
    struct cli_admin *admin;
    const char *vol, *id;
    char label[LABEL_MAX];
    struct progress prog;
    int shown;                  /* prog was started */
};

/* The progress of an InProgress backup ({"done", "total"}; null once it
 * has ended, when the last total seen stands). */
static void show_progress(struct follow *f, json_object *b)
{
    json_object *p = NULL;

    json_object_object_get_ex(b, "progress", &p);
    if (!f->shown) {
        progress_start(&f->prog, f->label, (uint64_t)cli_int(p, "total"));
        f->shown = 1;
    }
    if (!json_object_is_type(p, json_type_object))
        return;
    f->prog.total = (uint64_t)cli_int(p, "total");  /* known once counted */
    progress_update(&f->prog, (uint64_t)cli_int(p, "done"));
}

/* One look at the backup: 1 while InProgress, 0 when Completed (the
 * backup in *b), or a negative errno with the message. */
static int look(struct follow *f, const char *path, json_object **b)
{
    const char *state, *err;
    int r;

    r = cli_admin_call(f->admin, "GET", path, NULL, 0, b);
    if (r == -ENOENT)
        return cv_error(r, "backup %s of volume %s: gone while %s (it was "
                        "deleted: cryptvol backup list shows the target's "
                        "backups)", f->id, f->vol, f->label);
    if (r < 0)
        return cv_error_prefix(r, "%s: following backup %s (it goes on in "
                               "the daemon: cryptvol backup list %s)",
                               f->label, f->id, f->vol);
    show_progress(f, *b);
    state = cli_str(*b, "state");
    err = cli_str(*b, "error");
    if (!strcmp(state, "InProgress"))
        return 1;
    if (!strcmp(state, "Completed"))
        return 0;
    if (!strcmp(state, "Failed"))
        return cv_error(-EIO, "backup %s of volume %s failed: %s", f->id,
                        f->vol, err[0] ? err : "(the daemon gave no reason)");
    return cv_error(-EPROTO, "backup %s: state \"%.32s\" is none this "
                    "cryptvol knows", f->id, state);
}

static int wait_backup(struct follow *f, json_object **final)
{
    struct timespec ts = { 0, POLL_FIRST_NS };
    json_object *b = NULL;
    char path[64];
    int r;

    r = backup_path(path, sizeof path, f->id, "");
    if (r == 0)
        r = look(f, path, &b);
    while (r == 1) {
        json_object_put(b);
        b = NULL;
        nanosleep(&ts, NULL);
        ts.tv_nsec = ts.tv_nsec * 2 < POLL_MAX_NS ? ts.tv_nsec * 2 : POLL_MAX_NS;
        r = look(f, path, &b);
    }
    if (f->shown)
        progress_end(&f->prog, r == 0);
    if (r < 0) {
        json_object_put(b);
        return r;
    }
    *final = b;
    return 0;
}

/* "backup bk-... of db1@s1 completed (incremental to bk-...): 64.0 MiB
 * held, 2.0 MiB new". */
static void print_created(json_object *b)
{
    const char *base = cli_str(b, "base");
    char held[32], new_[32];

    printf("backup %s of %s@%s completed (%s%s): %s held, %s new\n",
           cli_str(b, "id"), cli_str(b, "volume"), cli_str(b, "snapshot"),
           base[0] ? "incremental to " : "full", base,
           size_words(b, "bytesHeld", held, sizeof held),
           size_words(b, "bytesNew", new_, sizeof new_));
}

/* The 202 answer (a Backup, InProgress) followed to its end; frees it. */
static int follow_backup(struct cli_args *a, json_object *accepted)
{
    struct follow f = { .admin = &a->admin, .vol = a->arg[0] };
    json_object *final = NULL;
    char id[ID_LEN + 1];
    int r;

    snprintf(id, sizeof id, "%s", cli_str(accepted, "id"));
    snprintf(f.label, sizeof f.label, "backing up %s@%s", a->arg[0],
             cli_str(accepted, "snapshot"));
    f.id = id;
    json_object_put(accepted);
    r = check_id(id);
    if (r < 0)
        return cli_fail(cv_error_prefix(r, "volume %s: the daemon answered "
                                        "the backup with", a->arg[0]));
    r = wait_backup(&f, &final);
    return cli_admin_finish(&a->admin, r, final, print_created);
}

int cmd_backup_create(struct cli_args *a)
{
    const char *snap = cli_value(a, "snapshot");
    json_object *body, *out = NULL;
    char path[256], scratch[128];
    int r;

    if (snap && strchr(snap, '@'))
        return cli_usage_error(a, "--snapshot takes the snapshot's name "
                               "alone, not \"%.140s\" (SNAP of VOL@SNAP)",
                               snap);
    r = cli_admin_path(path, sizeof path, "volume", "/v1/volumes/", a->arg[0],
                       "/backups");
    body = json_object_new_object();
    if (r == 0 && snap)
        r = cli_admin_path(scratch, sizeof scratch, "snapshot", "", snap,
                           "");
    if (r == 0 && snap)
        ADD(body, "snapshot", json_object_new_string(snap));
    if (r == 0)
        r = cli_admin_call_json(&a->admin, "POST", path, body, &out);
    json_object_put(body);
    if (r < 0)
        return cli_fail(r);
    if (!cli_flag(a, "no-wait"))
        return follow_backup(a, out);
    if (a->admin.json)
        cli_print_json(out);
    else
        printf("backup %s of %s@%s started (cryptvol backup list %s shows "
               "its progress)\n", cli_str(out, "id"), a->arg[0],
               cli_str(out, "snapshot"), a->arg[0]);
    json_object_put(out);
    return EXIT_OK;
}

/* ---- backup list ------------------------------------------------------ */

/* STATE: "Completed", "InProgress 40%", "Failed: why". */
static void state_words(json_object *b, char *buf, size_t len)
{
    const char *state = cli_str(b, "state");
    json_object *p = NULL;
    uint64_t done, total;

    json_object_object_get_ex(b, "progress", &p);
    done = (uint64_t)cli_int(p, "done");
    total = (uint64_t)cli_int(p, "total");
    if (!strcmp(state, "InProgress") && total)
        snprintf(buf, len, "%s %u%%", state,
                 (unsigned)(done >= total ? 100 : done * 100 / total));
    else if (!strcmp(state, "Failed") && cli_str(b, "error")[0])
        snprintf(buf, len, "%s: %s", state, cli_str(b, "error"));
    else
        snprintf(buf, len, "%s", state);
}

static int widest(json_object *list, const char *key, int w)
{
    size_t i, n = json_object_array_length(list);

    for (i = 0; i < n; i++) {
        int l = (int)strlen(cli_str(json_object_array_get_idx(list, i), key));
        w = l > w ? l : w;
    }
    return w;
}

static void print_backups(const char *vol, json_object *out)
{
    json_object *list = NULL;
    char size[32], new_[32], state[640];
    size_t i, n;
    int wv, ws;

    json_object_object_get_ex(out, "backups", &list);
    n = json_object_is_type(list, json_type_array) ?
        json_object_array_length(list) : 0;
    if (n == 0) {
        if (vol)
            printf("volume %s has no backups in the target\n", vol);
        else
            printf("the backup target holds no backups\n");
        return;
    }
    wv = widest(list, "volume", 6);
    ws = widest(list, "snapshot", 8);
    printf("%-*s  %-*s  %-*s  %-20s  %10s  %10s  %s\n", ID_LEN, "ID", wv,
           "VOLUME", ws, "SNAPSHOT", "CREATED", "SIZE", "NEW", "STATE");
    for (i = 0; i < n; i++) {
        json_object *b = json_object_array_get_idx(list, i);
        state_words(b, state, sizeof state);
        printf("%-*s  %-*s  %-*s  %-20s  %10s  %10s  %s\n", ID_LEN,
               cli_str(b, "id"), wv, cli_str(b, "volume"), ws,
               cli_str(b, "snapshot"), cli_str(b, "created"),
               size_words(b, "size", size, sizeof size),
               size_words(b, "bytesNew", new_, sizeof new_), state);
    }
}

int cmd_backup_list(struct cli_args *a)
{
    const char *vol = a->nargs ? a->arg[0] : NULL;
    json_object *out = NULL;
    char path[256] = "/v1/backups";
    int r = 0;

    if (vol)
        r = cli_admin_path(path, sizeof path, "volume", "/v1/backups?volume=",
                           vol, "");
    if (r == 0)
        r = cli_admin_call(&a->admin, "GET", path, NULL, 0, &out);
    if (r < 0)
        return cli_fail(r);
    if (a->admin.json)
        cli_print_json(out);
    else
        print_backups(vol, out);
    json_object_put(out);
    return EXIT_OK;
}

/* ---- backup verify ---------------------------------------------------- */

static const char *problem_words(const char *kind)
{
    return !strcmp(kind, "missing") ? "missing from the target" :
           !strcmp(kind, "checksum") ? "checksum mismatch (its bytes are "
                                       "not those the manifest lists)" :
           !strcmp(kind, "size") ? "of another size than the manifest lists" :
           kind;
}

static void print_verify(const char *id, json_object *v)
{
    json_object *list = NULL;
    char bytes[32];
    size_t i, n;

    if (cli_bool(v, "authenticated"))
        printf("backup %s: manifest authenticated\n", id);
    else
        printf("backup %s: manifest NOT authenticated: %s\n", id,
               cli_str(v, "authError")[0] ? cli_str(v, "authError") :
               "(the daemon gave no reason)");
    printf("backup %s: %lld blocks (%s) reread\n", id, cli_int(v, "blocks"),
           size_words(v, "bytes", bytes, sizeof bytes));
    json_object_object_get_ex(v, "problems", &list);
    n = json_object_is_type(list, json_type_array) ?
        json_object_array_length(list) : 0;
    for (i = 0; i < n; i++) {
        json_object *p = json_object_array_get_idx(list, i);
        printf("backup %s: block at offset %lld (sha256 %s): %s\n", id,
               cli_int(p, "offset"), cli_str(p, "sha256"),
               problem_words(cli_str(p, "problem")));
    }
    if (cli_bool(v, "ok"))
        printf("backup %s is intact\n", id);
}

/* Exit 1 unless the answer says ok, with why on stderr. */
static int verify_verdict(const char *id, json_object *v)
{
    json_object *list = NULL;
    size_t n;

    if (cli_bool(v, "ok"))
        return EXIT_OK;
    json_object_object_get_ex(v, "problems", &list);
    n = json_object_is_type(list, json_type_array) ?
        json_object_array_length(list) : 0;
    if (!cli_bool(v, "authenticated"))
        return cli_fail(cv_error(-EBADMSG, "backup %s: its manifest is not "
                                 "authenticated: %s (and %zu block "
                                 "problem%s)", id,
                                 cli_str(v, "authError")[0] ?
                                 cli_str(v, "authError") : "no reason given",
                                 n, n == 1 ? "" : "s"));
    return cli_fail(cv_error(-EBADMSG, "backup %s: %zu block problem%s: it "
                             "does not restore as it is", id, n,
                             n == 1 ? "" : "s"));
}

int cmd_backup_verify(struct cli_args *a)
{
    json_object *body = json_object_new_object(), *out = NULL;
    char path[64], label[64];
    struct progress prog;
    int r;

    r = backup_path(path, sizeof path, a->arg[0], "/verify");
    if (r == 0)
        r = add_name(a, body, "secret", "secret");
    if (r < 0) {
        json_object_put(body);
        return cli_fail(r);
    }
    /* One request that takes as long as reading the backup: a terminal
     * sees the time pass. */
    snprintf(label, sizeof label, "verifying backup %s", a->arg[0]);
    progress_start(&prog, label, 0);
    progress_tick(&prog);
    r = cli_admin_call_json(&a->admin, "POST", path, body, &out);
    progress_end(&prog, r == 0);
    json_object_put(body);
    if (r < 0)
        return cli_fail(r);
    if (a->admin.json)
        cli_print_json(out);
    else
        print_verify(a->arg[0], out);
    r = verify_verdict(a->arg[0], out);
    json_object_put(out);
    return r;
}

/* ---- backup restore --------------------------------------------------- */

/* "volume NAME: " at the start of an audit detail (the daemon's form for
 * backup events): its length, or 0. */
static size_t volume_prefix(const char *detail, const char *vol)
{
    size_t n = strlen(vol);

    return !strncmp(detail, "volume ", 7) && !strncmp(detail + 7, vol, n) &&
           !strncmp(detail + 7 + n, ": ", 2) ? 7 + n + 2 : 0;
}

/* Whether audit event e is the failure of the restore of backup id into
 * vol: object "backup/ID" with a detail "volume VOL: ...", or object the
 * volume ("volume/NAME", or the bare name, as older daemons wrote it). */
static int restore_failure(json_object *e, const char *id, const char *vol)
{
    const char *obj = cli_str(e, "object"), *detail = cli_str(e, "detail");

    if (strcmp(cli_str(e, "event"), "backup.restore") ||
        !strcmp(cli_str(e, "result"), "ok") || !detail[0])
        return 0;
    if (!strcmp(obj, vol) ||
        (!strncmp(obj, "volume/", 7) && !strcmp(obj + 7, vol)))
        return 1;
    return !strncmp(obj, "backup/", 7) && !strcmp(obj + 7, id) &&
           volume_prefix(detail, vol);
}

/* The detail of the failure event in the audit log since since, into
 * why; 1 if found, 0 if not (yet), < 0 if the log cannot be read. */
static int failure_detail(struct cli_admin *ad, const char *id,
                          const char *vol, time_t since, char *why,
                          size_t len)
{
    json_object *out = NULL, *events = NULL;
    char path[64];
    size_t i, n;
    int found = 0, r;

    snprintf(path, sizeof path, "/v1/audit?since=%lld", (long long)since);
    r = cli_admin_call(ad, "GET", path, NULL, 0, &out);
    if (r < 0)
        return r;
    json_object_object_get_ex(out, "events", &events);
    n = json_object_is_type(events, json_type_array) ?
        json_object_array_length(events) : 0;
    for (i = n; i-- > 0 && !found;) {
        json_object *e = json_object_array_get_idx(events, i);
        const char *d = cli_str(e, "detail");
        if ((found = restore_failure(e, id, vol)))
            snprintf(why, len, "%s", d + volume_prefix(d, vol));
    }
    json_object_put(out);
    return found;
}

/* A restore that fails removes the volume it was making, and its job with
 * it: the reason is then in the audit log's backup.restore event, which
 * the daemon writes once the volume is gone, so it is looked for a while
 * (AUDIT_WAIT_MS).  r: the wait's -ENOENT, whose message stands if the
 * event is not found. */
#define AUDIT_WAIT_MS 2000
static int restore_gone(struct cli_admin *ad, const char *id,
                        const char *vol, time_t since, int r)
{
    struct timespec ts = { 0, 50 * 1000 * 1000L };
    char gone[1024], why[1024];
    int found = 0, i;

    snprintf(gone, sizeof gone, "%s", cv_last_error());
    for (i = 0; i * 50 < AUDIT_WAIT_MS; i++) {
        found = failure_detail(ad, id, vol, since, why, sizeof why);
        if (found)
            break;
        nanosleep(&ts, NULL);
    }
    if (found > 0)
        return cv_error(-EIO, "volume %s: restoring from backup %s failed, "
                        "and the volume was removed: %s", vol, id, why);
    return cv_error(r, "%s", gone);
}

/* A restore waiting for its secret, as volume create's Pending. */
static void warn_pending(json_object *v, const char *id)
{
    const char *secret = cli_str(v, "secret"), *reason = cli_str(v, "reason");

    cli_warn("volume %s is Pending: %s; it is restored from backup %s once "
             "the secret exists: cryptvol secret create %s --from-file F",
             cli_str(v, "name"), reason[0] ? reason : "waiting for its secret",
             id, secret[0] ? secret : "NAME");
}

static int restore_request(struct cli_args *a, json_object **out)
{
    json_object *body = json_object_new_object();
    char path[64], scratch[128];
    int r;

    r = backup_path(path, sizeof path, a->arg[0], "/restore");
    if (r == 0)
        r = cli_admin_path(scratch, sizeof scratch, "volume", "", a->arg[1],
                           "");
    if (r == 0) {
        ADD(body, "name", json_object_new_string(a->arg[1]));
        r = add_name(a, body, "secret", "secret");
    }
    if (r == 0)
        r = add_name(a, body, "class", "class");
    if (r == 0)
        r = cli_admin_call_json(&a->admin, "POST", path, body, out);
    json_object_put(body);
    return r;
}

int cmd_backup_restore(struct cli_args *a)
{
    const char *id = a->arg[0], *vol = a->arg[1];
    json_object *out = NULL, *final = NULL;
    char label[LABEL_MAX], done[LABEL_MAX + 64];
    time_t since = time(NULL) - 1;
    int r;

    r = restore_request(a, &out);
    if (r < 0)
        return cli_fail(r);
    snprintf(label, sizeof label, "restoring %s from backup %s", vol, id);
    if (!strcmp(cli_str(out, "state"), "Pending")) {
        warn_pending(out, id);
        return cli_admin_finish(&a->admin, 0, out, cli_print_volume);
    }
    snprintf(done, sizeof done, "volume %s restored from backup %s: "
             "Available", vol, id);
    if (cli_flag(a, "no-wait"))
        return cli_job_finish(a, 0, out, vol, label, done);
    r = cli_job_wait(&a->admin, out, vol, label, &final);
    json_object_put(out);
    if (r == -ENOENT)
        r = restore_gone(&a->admin, id, vol, since, r);
    if (r < 0)
        return cli_fail(r);
    if (a->admin.json)
        cli_print_json(final);
    else
        printf("%s\n", done);
    json_object_put(final);
    return EXIT_OK;
}

/* ---- backup delete ---------------------------------------------------- */

static void print_deleted(json_object *o)
{
    char freed[32];

    printf("backup %s deleted: %s freed (the blocks no other backup uses)\n",
           cli_str(o, "id"), size_words(o, "freedBytes", freed, sizeof freed));
}

int cmd_backup_delete(struct cli_args *a)
{
    json_object *out = NULL;
    char path[64];
    int r;

    r = backup_path(path, sizeof path, a->arg[0], "");
    if (r == 0)
        r = cli_admin_call(&a->admin, "DELETE", path, NULL, 0, &out);
    return cli_admin_finish(&a->admin, r, out, print_deleted);
}
