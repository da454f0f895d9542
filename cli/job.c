/* The daemon's long jobs on a volume: a snapshot's merge, flatten, import,
 * export (docs/admin-api.md, "Jobs").  The request is answered 202 with
 * {"volume", "job"} and the work goes on in the daemon; GET
 * /v1/volumes/VOL shows the running or last job.  The CLI follows it
 * there, so a wait that is interrupted (^C, a lost connection) leaves the
 * job running and volume info shows it. */
#include "args.h"
#include "cli.h"
#include "client.h"
#include "core/error.h"
#include "progress.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Polls start 20 ms apart and back off to 200 ms: a short job is seen
 * done at once, a long one costs the daemon five requests a second. */
#define POLL_FIRST_NS (20 * 1000 * 1000L)
#define POLL_MAX_NS (200 * 1000 * 1000L)

enum job_state { JOB_RUNNING, JOB_COMPLETED, JOB_FAILED, JOB_UNKNOWN };

static enum job_state job_state(json_object *job)
{
    const char *s = cli_str(job, "state");

    return !strcmp(s, "Running") ? JOB_RUNNING :
           !strcmp(s, "Completed") ? JOB_COMPLETED :
           !strcmp(s, "Failed") ? JOB_FAILED : JOB_UNKNOWN;
}

/* Whether the volume's job is the one the 202 answer started: the same
 * kind, and target and start time where both say them.  Another job can
 * only follow ours once ours has ended. */
static int same_job(json_object *shown, json_object *ours)
{
    static const char *const keys[] = { "target", "started" };
    size_t i;

    if (!json_object_is_type(ours, json_type_object))
        return 1;               /* the answer said nothing to compare */
    if (strcmp(cli_str(shown, "kind"), cli_str(ours, "kind")))
        return 0;
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (cli_str(shown, keys[i])[0] && cli_str(ours, keys[i])[0] &&
            strcmp(cli_str(shown, keys[i]), cli_str(ours, keys[i])))
            return 0;
    return 1;
}

struct follow {
    struct cli_admin *admin;
    const char *vol, *label;
    json_object *ours;          /* the job of the 202 answer */
    struct progress prog;
    int shown;                  /* prog was started */
};

/* One look at the volume: 1 while our job runs, 0 when it Completed (the
 * volume in *v), or a negative errno with the message. */
static int look(struct follow *f, const char *path, json_object **v)
{
    json_object *job = NULL;
    uint64_t total;
    int r;

    r = cli_admin_call(f->admin, "GET", path, NULL, 0, v);
    /* An import that fails removes the volume it was making. */
    if (r == -ENOENT)
        return cv_error(r, "volume %s: gone while %s (the job failed and "
                        "removed it, or it was deleted: the daemon's log "
                        "says which)", f->vol, f->label);
    if (r < 0)
        return cv_error_prefix(r, "%s: following the job (it goes on in "
                               "the daemon: cryptvol volume info %s)",
                               f->label, f->vol);
    if (!json_object_object_get_ex(*v, "job", &job) || !job ||
        !same_job(job, f->ours))
        return cv_error(-EIO, "volume %s: %s: the daemon shows no such job "
                        "any more (cryptvol volume info %s shows the last "
                        "one)", f->vol, f->label, f->vol);
    total = (uint64_t)cli_int(job, "total");
    if (!f->shown) {
        progress_start(&f->prog, f->label, total);
        f->shown = 1;
    }
    f->prog.total = total;      /* known once the daemon has counted */
    progress_update(&f->prog, (uint64_t)cli_int(job, "done"));
    switch (job_state(job)) {
    case JOB_RUNNING:
        return 1;
    case JOB_COMPLETED:
        return 0;
    case JOB_FAILED:
        return cv_error(-EIO, "volume %s: %s failed: %s", f->vol, f->label,
                        cli_str(job, "error")[0] ? cli_str(job, "error") :
                        "(the daemon gave no reason)");
    default:
        return cv_error(-EPROTO, "volume %s: %s: job state \"%.32s\" is "
                        "none this cryptvol knows", f->vol, f->label,
                        cli_str(job, "state"));
    }
}

/* Follows the job until it ends; *final: the volume after it. */
static int wait_job(struct follow *f, json_object **final)
{
    struct timespec ts = { 0, POLL_FIRST_NS };
    json_object *v = NULL;
    char path[256];
    int r;

    r = cli_admin_path(path, sizeof path, "volume", "/v1/volumes/", f->vol,
                       "");
    if (r == 0)
        r = look(f, path, &v);
    while (r == 1) {
        json_object_put(v);
        v = NULL;
        nanosleep(&ts, NULL);
        ts.tv_nsec = ts.tv_nsec * 2 < POLL_MAX_NS ? ts.tv_nsec * 2 : POLL_MAX_NS;
        r = look(f, path, &v);
    }
    if (f->shown)
        progress_end(&f->prog, r == 0);
    if (r < 0) {
        json_object_put(v);
        return r;
    }
    *final = v;
    return 0;
}

static void print_started(const char *label, const char *vol)
{
    printf("%s started (cryptvol volume info %s shows its progress)\n",
           label, vol);
}

int cli_job_wait(struct cli_admin *admin, json_object *accepted,
                 const char *vol, const char *label, json_object **final)
{
    struct follow f = { .admin = admin, .vol = vol, .label = label };

    json_object_object_get_ex(accepted, "job", &f.ours);
    return wait_job(&f, final);
}

int cli_job_finish(struct cli_args *a, int r, json_object *accepted,
                   const char *vol, const char *label, const char *done_msg)
{
    json_object *final = NULL;

    if (r < 0 || cli_flag(a, "no-wait")) {
        if (r == 0 && !a->admin.json)
            print_started(label, vol);
        else if (r == 0)
            cli_print_json(accepted);
        json_object_put(accepted);
        return r < 0 ? cli_fail(r) : EXIT_OK;
    }
    r = cli_job_wait(&a->admin, accepted, vol, label, &final);
    json_object_put(accepted);
    if (r < 0)
        return cli_fail(r);
    if (a->admin.json)
        cli_print_json(final);
    else
        printf("%s\n", done_msg);
    json_object_put(final);
    return EXIT_OK;
}
