/* The audit log: events appended and read back, the since filter and the
 * times it takes, a log others can read refused, a line torn by a crash
 * skipped, odd names escaped into valid one-line JSON, threads appending
 * at once never mixing their lines; on a cluster every event names its
 * node and reaches the store's log, retried while the store fails. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "audit/audit.h"
#include "core/error.h"
#include "meta/meta.h"

struct fixture {
    char dir[PATH_MAX];
    char path[PATH_MAX + 16];
    struct cvd_audit *a;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/cv-audit-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/audit.log", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    cvd_audit_close(f->a);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* What a crash or an older daemon left: the file as given, mode 0600. */
static void write_log(struct fixture *f, const char *text, mode_t mode)
{
    int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static char *read_log(struct fixture *f)
{
    static char buf[1 << 20];
    int fd = open(f->path, O_RDONLY);
    ssize_t n;

    assert_true(fd >= 0);
    n = read(fd, buf, sizeof buf - 1);
    assert_true(n >= 0);
    buf[n] = '\0';
    close(fd);
    return buf;
}

/* Collects events read back. */
struct got {
    json_object *events;
    int stop_after;             /* > 0: stop once this many are in */
};

static int collect(void *arg, json_object *e)
{
    struct got *g = arg;

    json_object_array_add(g->events, json_object_get(e));
    return g->stop_after && (int)json_object_array_length(g->events) >=
                            g->stop_after;
}

/* Reads everything at or after since into a fresh array; returns what
 * cvd_audit_read returned in *r. */
static json_object *read_events(struct fixture *f, int64_t since, int *r)
{
    struct got g = { .events = json_object_new_array() };

    *r = cvd_audit_read(f->a, since, collect, &g);
    return g.events;
}

static const char *field(json_object *events, size_t i, const char *key)
{
    json_object *v;

    if (!json_object_object_get_ex(json_object_array_get_idx(events, i), key,
                                   &v))
        return NULL;
    return json_object_get_string(v);
}

static void test_append_and_read(void **state)
{
    struct fixture *f = *state;
    json_object *ev;
    struct stat st;
    char now[32];
    int r;

    assert_int_equal(cvd_audit_open(f->dir, &f->a), 0);
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(cvd_audit(f->a, "uid=0(root) pid=1", "secret.create",
                               "secret/db1", 1, NULL), 0);
    assert_int_equal(cvd_audit(f->a, "uid=0(root) pid=2", "secret.delete",
                               "secret/db1", 0, "secret %s: used by volume %s",
                               "db1", "v1"), 0);
    ev = read_events(f, 0, &r);
    assert_int_equal(r, 0);
    assert_int_equal(json_object_array_length(ev), 2);
    assert_string_equal(field(ev, 0, "actor"), "uid=0(root) pid=1");
    assert_string_equal(field(ev, 0, "event"), "secret.create");
    assert_string_equal(field(ev, 0, "object"), "secret/db1");
    assert_string_equal(field(ev, 0, "result"), "ok");
    assert_null(field(ev, 0, "detail"));
    assert_string_equal(field(ev, 1, "result"), "refused");
    assert_string_equal(field(ev, 1, "detail"), "secret db1: used by volume v1");
    /* RFC 3339, UTC, whole seconds, about now. */
    cvd_audit_format_time((int64_t)time(NULL), now, sizeof now);
    assert_int_equal(strlen(field(ev, 0, "time")), 20);
    assert_memory_equal(field(ev, 0, "time"), now, 14);    /* to the hour */
    json_object_put(ev);

    /* A second open appends to what is there. */
    cvd_audit_close(f->a);
    assert_int_equal(cvd_audit_open(f->dir, &f->a), 0);
    assert_int_equal(cvd_audit(f->a, "a", "secret.update", "secret/x", 1,
                               NULL), 0);
    ev = read_events(f, 0, &r);
    assert_int_equal(json_object_array_length(ev), 3);
    json_object_put(ev);
    /* Each event is exactly one line. */
    {
        const char *text = read_log(f);
        int lines = 0;
        for (const char *p = text; *p; p++)
            lines += *p == '\n';
        assert_int_equal(lines, 3);
        assert_int_equal(text[strlen(text) - 1], '\n');
    }
}

static void test_callback_stops(void **state)
{
    struct fixture *f = *state;
    struct got g = { .events = json_object_new_array(), .stop_after = 2 };
    int i;

    assert_int_equal(cvd_audit_open(f->dir, &f->a), 0);
    for (i = 0; i < 5; i++)
        assert_int_equal(cvd_audit(f->a, "a", "e", "o", 1, "%d", i), 0);
    assert_int_equal(cvd_audit_read(f->a, 0, collect, &g), 0);
    assert_int_equal(json_object_array_length(g.events), 2);
    json_object_put(g.events);
    /* No log: nothing recorded, nothing fails. */
    assert_int_equal(cvd_audit(NULL, "a", "e", "o", 1, NULL), 0);
    cvd_audit_close(NULL);
}

static void test_since(void **state)
{
    struct fixture *f = *state;
    json_object *ev;
    int r;

    /* 2026-11-23T10:00:00Z is 1795428000. */
    write_log(f, "{\"time\":\"2026-11-23T09:59:59Z\",\"event\":\"a\"}\n"
                 "{\"time\":\"2026-11-23T10:00:00Z\",\"event\":\"b\"}\n"
                 "{\"time\":\"2026-11-23T11:30:00Z\",\"event\":\"c\"}\n",
              0600);
    assert_int_equal(cvd_audit_open(f->dir, &f->a), 0);
    ev = read_events(f, 1795428000, &r);
    assert_int_equal(r, 0);
    assert_int_equal(json_object_array_length(ev), 2);
    assert_string_equal(field(ev, 0, "event"), "b");
    assert_string_equal(field(ev, 1, "event"), "c");
    json_object_put(ev);
    ev = read_events(f, 0, &r);
    assert_int_equal(json_object_array_length(ev), 3);
    json_object_put(ev);
    /* After the last: nothing. */
    assert_int_equal(cvd_audit(f->a, "a", "d", "o", 1, NULL), 0);
    ev = read_events(f, (int64_t)time(NULL) + 3600, &r);
    assert_int_equal(r, 0);
    assert_int_equal(json_object_array_length(ev), 0);
    json_object_put(ev);
}

static void test_parse_since(void **state)
{
    const int64_t now = 1795428000;     /* 2026-11-23T10:00:00Z */
    static const char *const bad[] = {
        "", "x", "10x", "-5", "1h ago", "h", "10 m", "1.5h",
        "2026-11-23", "2026-11-23T10:00:00", "2026-11-23T10:00Z",
        "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z",
        "2026-11-23T24:00:00Z", "2026-11-23T10:00:00+1:00",
        "2026-11-23T10:00:00Zjunk", "26-11-23T10:00:00Z",
        "2026-11-23T10:00:00.Z", "1234567890123", NULL };
    int64_t t;
    int i;

    (void)state;
    assert_int_equal(cvd_audit_parse_since("1795428000", now, &t), 0);
    assert_int_equal(t, 1795428000);
    assert_int_equal(cvd_audit_parse_since("0", now, &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(cvd_audit_parse_since("2026-11-23T10:00:00Z", now, &t), 0);
    assert_int_equal(t, 1795428000);
    assert_int_equal(cvd_audit_parse_since("2026-11-23t10:00:00z", now, &t), 0);
    assert_int_equal(t, 1795428000);
    assert_int_equal(cvd_audit_parse_since("2026-11-23 10:00:00Z", now, &t), 0);
    assert_int_equal(t, 1795428000);
    assert_int_equal(cvd_audit_parse_since("2026-11-23T11:00:00+01:00", now,
                                           &t), 0);
    assert_int_equal(t, 1795428000);
    assert_int_equal(cvd_audit_parse_since("2026-11-23T05:30:00-04:30", now,
                                           &t), 0);
    assert_int_equal(t, 1795428000);
    assert_int_equal(cvd_audit_parse_since("2026-11-23T10:00:00.999Z", now,
                                           &t), 0);
    assert_int_equal(t, 1795428000);
    assert_int_equal(cvd_audit_parse_since("2024-02-29T00:00:00Z", now, &t), 0);
    assert_int_equal(t, 1709164800);
    assert_int_equal(cvd_audit_parse_since("90s", now, &t), 0);
    assert_int_equal(t, now - 90);
    assert_int_equal(cvd_audit_parse_since("10m", now, &t), 0);
    assert_int_equal(t, now - 600);
    assert_int_equal(cvd_audit_parse_since("2h", now, &t), 0);
    assert_int_equal(t, now - 7200);
    assert_int_equal(cvd_audit_parse_since("1d", now, &t), 0);
    assert_int_equal(t, now - 86400);
    for (i = 0; bad[i]; i++) {
        cv_clear_error();
        if (cvd_audit_parse_since(bad[i], now, &t) != -EINVAL)
            fail_msg("since \"%s\" was accepted", bad[i]);
        assert_non_null(strstr(cv_last_error(), "not a time"));
    }
}

static void test_readable_log_refused(void **state)
{
    struct fixture *f = *state;
    static const mode_t modes[] = { 0644, 0640, 0604, 0620, 0602 };
    char want[64];
    size_t i;

    for (i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        write_log(f, "", modes[i]);
        assert_int_equal(cvd_audit_open(f->dir, &f->a), -EPERM);
        assert_null(f->a);
        snprintf(want, sizeof want, "mode %04o lets group or others",
                 (unsigned)modes[i]);
        assert_non_null(strstr(cv_last_error(), want));
        assert_non_null(strstr(cv_last_error(), f->path));
        assert_non_null(strstr(cv_last_error(), "chmod 600"));
    }
    /* Not followed through a symlink either. */
    unlink(f->path);
    assert_int_equal(symlink("/etc/passwd", f->path), 0);
    assert_true(cvd_audit_open(f->dir, &f->a) < 0);
    assert_null(f->a);
    unlink(f->path);
    write_log(f, "", 0600);
    assert_int_equal(cvd_audit_open(f->dir, &f->a), 0);
}

static void test_torn_last_line(void **state)
{
    struct fixture *f = *state;
    json_object *ev;
    int r;

    write_log(f, "{\"time\":\"2026-11-23T10:00:00Z\",\"event\":\"a\"}\n"
                 "{\"time\":\"2026-11-23T10:00:01Z\",\"event\":\"b\"}\n"
                 "{\"time\":\"2026-11-23T10:00:02Z\",\"ev", 0600);
    assert_int_equal(cvd_audit_open(f->dir, &f->a), 0);
    ev = read_events(f, 0, &r);
    assert_int_equal(r, 1);             /* one skipped, no failure */
    assert_int_equal(json_object_array_length(ev), 2);
    json_object_put(ev);
    /* The next event is a line of its own, not glued to the torn one. */
    assert_int_equal(cvd_audit(f->a, "a", "c", "o", 1, NULL), 0);
    ev = read_events(f, 0, &r);
    assert_int_equal(r, 1);
    assert_int_equal(json_object_array_length(ev), 3);
    assert_string_equal(field(ev, 2, "event"), "c");
    json_object_put(ev);
    assert_int_equal(cvd_audit(f->a, "a", "d", "o", 1, NULL), 0);
    ev = read_events(f, 0, &r);
    assert_int_equal(r, 1);
    assert_int_equal(json_object_array_length(ev), 4);
    json_object_put(ev);
}

static void test_malformed_lines(void **state)
{
    struct fixture *f = *state;
    json_object *ev;
    char *big;
    int r, fd;

    write_log(f, "not json\n"
                 "[1,2]\n"
                 "{\"event\":\"no time\"}\n"
                 "{\"time\":\"yesterday\"}\n"
                 "{\"time\":\"2026-11-23T10:00:00Z\"} trailing\n"
                 "\n"
                 "{\"time\":\"2026-11-23T10:00:00Z\",\"event\":\"ok\"}\n",
              0600);
    /* And a line longer than any event, across read chunks. */
    big = malloc(300 * 1024);
    assert_non_null(big);
    memset(big, 'x', 300 * 1024);
    big[300 * 1024 - 1] = '\n';
    fd = open(f->path, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, big, 300 * 1024), 300 * 1024);
    assert_int_equal(write(fd, "{\"time\":\"2026-11-23T10:00:00Z\"}\n", 32), 32);
    close(fd);
    free(big);
    assert_int_equal(cvd_audit_open(f->dir, &f->a), 0);
    ev = read_events(f, 0, &r);
    assert_int_equal(r, 6);
    assert_int_equal(json_object_array_length(ev), 2);
    assert_string_equal(field(ev, 0, "event"), "ok");
    json_object_put(ev);
}

static void test_odd_names(void **state)
{
    struct fixture *f = *state;
    static const char odd[] = "q\"uo\\te\nnew\tline\r\x01\x1f é €";
    char longname[2000], want[300];
    json_object *ev;
    const char *text;
    int r;

    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(cvd_audit_open(f->dir, &f->a), 0);
    assert_int_equal(cvd_audit(f->a, odd, "secret.create", odd, 0, "%s", odd), 0);
    /* Not UTF-8: an invalid byte, an overlong '/', a surrogate, a cut
     * sequence. */
    assert_int_equal(cvd_audit(f->a, "a\xff" "b", "e", "\xc0\xaf" "x\xed\xa0\x80",
                               1, "end\xe2\x82"), 0);
    assert_int_equal(cvd_audit(f->a, longname, "e", "o", 1, "%s%%d", longname), 0);
    ev = read_events(f, 0, &r);
    assert_int_equal(r, 0);
    assert_int_equal(json_object_array_length(ev), 3);
    assert_string_equal(field(ev, 0, "actor"), odd);
    assert_string_equal(field(ev, 0, "object"), odd);
    assert_string_equal(field(ev, 0, "detail"), odd);
    assert_string_equal(field(ev, 1, "actor"), "a\xef\xbf\xbd" "b");
    assert_string_equal(field(ev, 1, "object"),
                        "\xef\xbf\xbd\xef\xbf\xbd" "x"
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(field(ev, 1, "detail"),
                        "end\xef\xbf\xbd\xef\xbf\xbd");
    /* Cut, and said to be. */
    memset(want, 'n', 256);
    memcpy(want + 256, "...", 4);
    assert_string_equal(field(ev, 2, "actor"), want);
    assert_int_equal(strlen(field(ev, 2, "detail")), 1024 + 3);
    json_object_put(ev);
    /* Three events, three lines, each valid JSON on its own. */
    text = read_log(f);
    {
        int lines = 0;
        for (const char *p = text; *p; p++)
            lines += *p == '\n';
        assert_int_equal(lines, 3);
    }
    assert_null(strchr(text, '\x01'));
    assert_null(strchr(text, '\xff'));
}

#define THREADS 8
#define PER_THREAD 200

struct writer {
    struct cvd_audit *a;
    int id;
};

static void *write_many(void *arg)
{
    struct writer *w = arg;
    char actor[32], pad[800];
    int i;

    snprintf(actor, sizeof actor, "thread-%d", w->id);
    memset(pad, 'a' + w->id, sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (i = 0; i < PER_THREAD; i++)
        if (cvd_audit(w->a, actor, "secret.update", "secret/s", 1,
                      "%d %s", i, pad) < 0)
            return (void *)1;
    return NULL;
}

static void test_concurrent_appends(void **state)
{
    struct fixture *f = *state;
    static int seen[THREADS][PER_THREAD];
    struct writer w[THREADS];
    pthread_t t[THREADS];
    json_object *ev;
    size_t i, n;
    void *ret;
    int r, id, k;

    assert_int_equal(cvd_audit_open(f->dir, &f->a), 0);
    for (id = 0; id < THREADS; id++) {
        w[id] = (struct writer){ f->a, id };
        assert_int_equal(pthread_create(&t[id], NULL, write_many, &w[id]), 0);
    }
    for (id = 0; id < THREADS; id++) {
        assert_int_equal(pthread_join(t[id], &ret), 0);
        assert_null(ret);
    }
    ev = read_events(f, 0, &r);
    assert_int_equal(r, 0);
    n = json_object_array_length(ev);
    assert_int_equal(n, THREADS * PER_THREAD);
    memset(seen, 0, sizeof seen);
    for (i = 0; i < n; i++) {
        const char *actor = field(ev, i, "actor"), *detail = field(ev, i, "detail");
        assert_int_equal(sscanf(actor, "thread-%d", &id), 1);
        assert_int_equal(sscanf(detail, "%d", &k), 1);
        assert_true(id >= 0 && id < THREADS && k >= 0 && k < PER_THREAD);
        /* The padding is the writer's own: no line took another's bytes. */
        assert_int_equal(strspn(strchr(detail, ' ') + 1,
                                (char[]){ (char)('a' + id), 0 }), 799);
        seen[id][k]++;
    }
    for (id = 0; id < THREADS; id++)
        for (k = 0; k < PER_THREAD; k++)
            assert_int_equal(seen[id][k], 1);
    json_object_put(ev);
}

/* ---- The cluster-wide copy (audit-remote.c) against a store whose
 * audit_append fails fail_left times, then keeps what it is given. ---- */
struct fake_store {
    struct cvd_meta base;
    pthread_mutex_t lock;
    int fail_left;
    int calls;
    char *lines[64];
    char nodes[64][16];
    int n;
};

static int fake_append(struct cvd_meta *m, const char *node, const char *line)
{
    struct fake_store *f = (struct fake_store *)m;
    int r = 0;

    pthread_mutex_lock(&f->lock);
    f->calls++;
    if (f->fail_left > 0) {
        f->fail_left--;
        r = cv_error(-ENOTCONN, "metadata store unreachable: fake");
    } else if (f->n < 64) {
        snprintf(f->nodes[f->n], sizeof f->nodes[f->n], "%s", node);
        f->lines[f->n++] = strdup(line);
    }
    pthread_mutex_unlock(&f->lock);
    return r;
}

static int fake_read(struct cvd_meta *m, int64_t since,
                     int (*cb)(void *arg, json_object *ev), void *arg)
{
    struct fake_store *f = (struct fake_store *)m;
    int i, r = 0;

    (void)since;
    pthread_mutex_lock(&f->lock);
    for (i = 0; i < f->n && r == 0; i++) {
        json_object *o = json_tokener_parse(f->lines[i]);
        assert_non_null(o);
        r = cb(arg, o);
        json_object_put(o);
    }
    pthread_mutex_unlock(&f->lock);
    return r;
}

static const struct cvd_meta_ops fake_ops = {
    .kind = "fake", .audit_append = fake_append, .audit_read = fake_read,
};

static int collect_all(void *arg, json_object *ev)
{
    json_object_array_add(arg, json_object_get(ev));
    return 0;
}

static void test_cluster_copy(void **state)
{
    struct fixture *f = *state;
    struct fake_store st = { .base.ops = &fake_ops, .fail_left = 3 };
    struct cvd_audit_remote_counts c;
    json_object *ev = json_object_new_array(), *local;
    char obj[32];
    size_t i;
    int r;

    pthread_mutex_init(&st.lock, NULL);
    assert_int_equal(cvd_audit_open(f->dir, &f->a), 0);
    cvd_audit_set_node(f->a, "n1");
    assert_int_equal(cvd_audit_set_cluster(f->a, &st.base), 0);
    assert_true(cvd_audit_clustered(f->a));
    for (i = 0; i < 5; i++) {
        snprintf(obj, sizeof obj, "volume/v%zu", i);
        assert_int_equal(cvd_audit(f->a, "tester", "volume.create", obj, 1,
                                   NULL), 0);
    }
    /* Three failed appends (0.1 + 0.2 + 0.4 s of pauses), then all five:
     * the read waits for them. */
    assert_int_equal(cvd_audit_read_cluster(f->a, 0, collect_all, ev), 0);
    assert_int_equal(json_object_array_length(ev), 5);
    for (i = 0; i < 5; i++) {
        snprintf(obj, sizeof obj, "volume/v%zu", i);
        assert_string_equal(field(ev, i, "object"), obj);
        assert_string_equal(field(ev, i, "node"), "n1");
        assert_string_equal(st.nodes[i], "n1");
        assert_null(strchr(st.lines[i], '\n'));
    }
    cvd_audit_remote_counts(f->a, &c);
    assert_int_equal(c.sent, 5);
    assert_int_equal(c.failures, 3);
    assert_int_equal(c.dropped, 0);
    assert_int_equal(c.queued, 0);
    /* The local file has them too, with the node. */
    local = read_events(f, 0, &r);
    assert_int_equal(r, 0);
    assert_int_equal(json_object_array_length(local), 5);
    assert_string_equal(field(local, 4, "node"), "n1");
    json_object_put(local);
    /* The store down for good: events wait, close does not hang. */
    st.fail_left = 1 << 30;
    assert_int_equal(cvd_audit(f->a, "tester", "volume.delete", "volume/v0",
                               1, NULL), 0);
    cvd_audit_remote_counts(f->a, &c);
    assert_int_equal(c.sent, 5);
    cvd_audit_close(f->a);
    f->a = NULL;
    assert_int_equal(st.n, 5);
    json_object_put(ev);
    for (i = 0; i < (size_t)st.n; i++)
        free(st.lines[i]);
    pthread_mutex_destroy(&st.lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_and_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_stops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_since, setup, teardown),
        cmocka_unit_test(test_parse_since),
        cmocka_unit_test_setup_teardown(test_readable_log_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_torn_last_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_odd_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_appends, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cluster_copy, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
