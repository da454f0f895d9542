/* The Prometheus text format as metrics-text.c writes it (escaping, names
 * the format refuses, histograms, numbers), and the registry: a volume's
 * counters shared by its connections and dropped with its record, bytes
 * counted only for requests that succeeded, latencies in the right bucket,
 * the exposition with and without the per-volume series.
 * tests/metrics.sh scrapes the real daemon and checks the output with
 * promtool. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit/audit.h"
#include "core/error.h"
#include "daemon.h"
#include "log.h"
#include "meta/meta.h"
#include "metrics/metrics.h"
#include "metrics/metrics-text.h"

#define LABELS(...) ((const char *[]){ __VA_ARGS__, NULL })

/* --- The text format ---------------------------------------------------- */

static char *finish_ok(struct cvd_prom *p)
{
    char *text = NULL;
    size_t len = 0;

    assert_int_equal(cvd_prom_finish(p, &text, &len), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

/* finish must fail with -EINVAL and a message containing want. */
static void finish_fails(struct cvd_prom *p, const char *want)
{
    char *text = (char *)"untouched";
    size_t len = 1;

    assert_int_equal(cvd_prom_finish(p, &text, &len), -EINVAL);
    assert_null(text);
    assert_int_equal(len, 0);
    if (!strstr(cv_last_error(), want))
        fail_msg("error \"%s\" does not say \"%s\"", cv_last_error(), want);
}

static void test_counter_and_labels(void **state)
{
    struct cvd_prom p;
    char *text;

    (void)state;
    cvd_prom_init(&p);
    cvd_prom_family(&p, "x_requests_total", CVD_PROM_COUNTER, "Requests.");
    cvd_prom_u64(&p, "x_requests_total", LABELS("volume", "db1", "op", "read"),
                 3);
    cvd_prom_u64(&p, "x_requests_total", NULL, UINT64_MAX);
    cvd_prom_family(&p, "x_up", CVD_PROM_GAUGE, "Up.");
    cvd_prom_u64(&p, "x_up", NULL, 1);
    text = finish_ok(&p);
    assert_string_equal(text,
        "# HELP x_requests_total Requests.\n"
        "# TYPE x_requests_total counter\n"
        "x_requests_total{volume=\"db1\",op=\"read\"} 3\n"
        "x_requests_total 18446744073709551615\n"
        "# HELP x_up Up.\n"
        "# TYPE x_up gauge\n"
        "x_up 1\n");
    free(text);
}

/* Label values escape backslash, double quote and line feed; help text
 * backslash and line feed only (a quote is itself there). */
static void test_escaping(void **state)
{
    struct cvd_prom p;
    char *text;

    (void)state;
    cvd_prom_init(&p);
    cvd_prom_family(&p, "x", CVD_PROM_GAUGE,
                    "a \"quoted\" \\ back\nslash");
    cvd_prom_u64(&p, "x", LABELS("v", "a\"b\\c\nd"), 0);
    cvd_prom_u64(&p, "x", LABELS("v", "caf\xc3\xa9 \xe2\x82\xac"), 1);
    cvd_prom_u64(&p, "x", LABELS("v", ""), 2);
    text = finish_ok(&p);
    assert_string_equal(text,
        "# HELP x a \"quoted\" \\\\ back\\nslash\n"
        "# TYPE x gauge\n"
        "x{v=\"a\\\"b\\\\c\\nd\"} 0\n"
        "x{v=\"caf\xc3\xa9 \xe2\x82\xac\"} 1\n"
        "x{v=\"\"} 2\n");
    free(text);
}

static void test_bad_names(void **state)
{
    static const char *const bad_metric[] = { "9lives", "a-b", "", "a b",
                                              "x\n" };
    static const char *const bad_label[] = { "__name", "a-b", "", "9x",
                                             "a:b" };
    struct cvd_prom p;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof bad_metric / sizeof *bad_metric; i++) {
        cvd_prom_init(&p);
        cvd_prom_family(&p, bad_metric[i], CVD_PROM_GAUGE, "h");
        finish_fails(&p, "is not valid");
    }
    for (i = 0; i < sizeof bad_label / sizeof *bad_label; i++) {
        cvd_prom_init(&p);
        cvd_prom_family(&p, "x", CVD_PROM_GAUGE, "h");
        cvd_prom_u64(&p, "x", LABELS(bad_label[i], "v"), 1);
        finish_fails(&p, "is not valid");
    }
    /* Colons are allowed in metric names (recording rules use them). */
    cvd_prom_init(&p);
    cvd_prom_family(&p, "job:x_total:rate5m", CVD_PROM_GAUGE, "h");
    cvd_prom_u64(&p, "job:x_total:rate5m", NULL, 1);
    free(finish_ok(&p));
}

static void test_bad_utf8(void **state)
{
    static const char *const bad[] = {
        "\xff", "a\xc3", "\xc0\xaf" /* overlong "/" */,
        "\xed\xa0\x80" /* a surrogate */, "\xf4\x90\x80\x80" /* > U+10FFFF */,
    };
    struct cvd_prom p;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cvd_prom_init(&p);
        cvd_prom_family(&p, "x", CVD_PROM_GAUGE, "h");
        cvd_prom_u64(&p, "x", LABELS("v", bad[i]), 1);
        finish_fails(&p, "is not UTF-8");
    }
}

/* Samples belong to the family declared last; a family is declared
 * once: Prometheus refuses an exposition that breaks either. */
static void test_family_rules(void **state)
{
    struct cvd_prom p;

    (void)state;
    cvd_prom_init(&p);
    cvd_prom_u64(&p, "x", NULL, 1);
    finish_fails(&p, "not of the family declared last");

    cvd_prom_init(&p);
    cvd_prom_family(&p, "x", CVD_PROM_GAUGE, "h");
    cvd_prom_family(&p, "y", CVD_PROM_GAUGE, "h");
    cvd_prom_u64(&p, "x", NULL, 1);
    finish_fails(&p, "not of the family declared last");

    cvd_prom_init(&p);
    cvd_prom_family(&p, "x", CVD_PROM_GAUGE, "h");
    cvd_prom_family(&p, "y", CVD_PROM_GAUGE, "h");
    cvd_prom_family(&p, "x", CVD_PROM_GAUGE, "h");
    finish_fails(&p, "declared twice");

    /* A histogram's parts are not samples of a gauge, nor the reverse. */
    cvd_prom_init(&p);
    cvd_prom_family(&p, "h", CVD_PROM_HISTOGRAM, "h");
    cvd_prom_u64(&p, "h", NULL, 1);
    finish_fails(&p, "not of the family declared last");
}

static void test_histogram(void **state)
{
    static const double bounds[] = { 0.00005, 0.001, 2.5 };
    const uint64_t counts[] = { 2, 0, 5, 1 };
    struct cvd_prom p;
    char *text;

    (void)state;
    cvd_prom_init(&p);
    cvd_prom_family(&p, "d_seconds", CVD_PROM_HISTOGRAM, "Latency.");
    cvd_prom_histogram(&p, "d_seconds", LABELS("op", "read"), bounds, counts,
                       3, 0.25);
    cvd_prom_histogram(&p, "d_seconds", NULL, bounds, counts, 3, 0);
    text = finish_ok(&p);
    assert_string_equal(text,
        "# HELP d_seconds Latency.\n"
        "# TYPE d_seconds histogram\n"
        "d_seconds_bucket{op=\"read\",le=\"5e-05\"} 2\n"
        "d_seconds_bucket{op=\"read\",le=\"0.001\"} 2\n"
        "d_seconds_bucket{op=\"read\",le=\"2.5\"} 7\n"
        "d_seconds_bucket{op=\"read\",le=\"+Inf\"} 8\n"
        "d_seconds_sum{op=\"read\"} 0.25\n"
        "d_seconds_count{op=\"read\"} 8\n"
        "d_seconds_bucket{le=\"5e-05\"} 2\n"
        "d_seconds_bucket{le=\"0.001\"} 2\n"
        "d_seconds_bucket{le=\"2.5\"} 7\n"
        "d_seconds_bucket{le=\"+Inf\"} 8\n"
        "d_seconds_sum 0\n"
        "d_seconds_count 8\n");
    free(text);

    cvd_prom_init(&p);
    cvd_prom_family(&p, "d", CVD_PROM_HISTOGRAM, "h");
    cvd_prom_histogram(&p, "d", LABELS("le", "1"), bounds, counts, 3, 0);
    finish_fails(&p, "\"le\" is the histogram's own label");

    cvd_prom_init(&p);
    cvd_prom_family(&p, "d", CVD_PROM_HISTOGRAM, "h");
    cvd_prom_histogram(&p, "d", NULL, (const double[]){ 1, 1 }, counts, 2, 0);
    finish_fails(&p, "bounds not ascending");
}

/* The shortest text that reads back as the same double, and the format's
 * spellings of the special values. */
static void test_numbers(void **state)
{
    struct cvd_prom p;
    char *text;

    (void)state;
    cvd_prom_init(&p);
    cvd_prom_family(&p, "n", CVD_PROM_GAUGE, "h");
    cvd_prom_double(&p, "n", LABELS("v", "a"), 0.1);
    cvd_prom_double(&p, "n", LABELS("v", "b"), 1796125161.0644495);
    cvd_prom_double(&p, "n", LABELS("v", "c"), 1.0 / 3);
    cvd_prom_double(&p, "n", LABELS("v", "d"), INFINITY);
    cvd_prom_double(&p, "n", LABELS("v", "e"), -INFINITY);
    cvd_prom_double(&p, "n", LABELS("v", "f"), NAN);
    cvd_prom_double(&p, "n", LABELS("v", "g"), -0.5);
    text = finish_ok(&p);
    assert_string_equal(text,
        "# HELP n h\n# TYPE n gauge\n"
        "n{v=\"a\"} 0.1\n"
        "n{v=\"b\"} 1796125161.0644495\n"
        "n{v=\"c\"} 0.3333333333333333\n"
        "n{v=\"d\"} +Inf\n"
        "n{v=\"e\"} -Inf\n"
        "n{v=\"f\"} NaN\n"
        "n{v=\"g\"} -0.5\n");
    free(text);
}

/* --- The registry -------------------------------------------------------- */

struct world {
    char dir[64];
    struct cvd d;
};

static void add_volume(struct world *w, const char *name, const char *state)
{
    struct cvd_volume_rec v = { .size = 1 << 20, .type = "plaintext",
                                .cipher = "none", .sector_size = 512 };

    snprintf(v.name, sizeof v.name, "%s", name);
    snprintf(v.state, sizeof v.state, "%s", state);
    snprintf(v.path, sizeof v.path, "%s/%s.img", w->dir, name);
    assert_int_equal(w->d.meta->ops->volume_add(w->d.meta, &v, NULL), 0);
}

static int world_setup(void **state)
{
    struct world *w = calloc(1, sizeof *w);

    cvd_log_init(LOG_ERR);
    snprintf(w->dir, sizeof w->dir, "/tmp/test-metrics.XXXXXX");
    assert_non_null(mkdtemp(w->dir));
    assert_int_equal(cvd_meta_open_sqlite(w->dir, &w->d.meta), 0);
    assert_int_equal(cvd_metrics_new(&w->d.metrics), 0);
    *state = w;
    return 0;
}

static int world_teardown(void **state)
{
    struct world *w = *state;
    char cmd[128];

    cvd_metrics_free(w->d.metrics);
    cvd_meta_close(w->d.meta);
    snprintf(cmd, sizeof cmd, "rm -rf %s", w->dir);
    assert_int_equal(system(cmd), 0);
    free(w);
    return 0;
}

static char *render(struct world *w, unsigned flags)
{
    char *text = NULL;
    size_t len = 0;

    if (cvd_metrics_render(&w->d, flags, &text, &len) < 0)
        fail_msg("render: %s", cv_last_error());
    return text;
}

static void has_line(const char *text, const char *line)
{
    const char *p = text;
    size_t n = strlen(line);

    while ((p = strstr(p, line)))
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
        else
            p++;
    fail_msg("no line \"%s\" in:\n%s", line, text);
}

static void lacks(const char *text, const char *what)
{
    if (strstr(text, what))
        fail_msg("\"%s\" should not be in:\n%s", what, text);
}

/* Two connections of one volume share its counters; the next connection
 * after both left finds them as they were; failed requests count as
 * requests and errors, not as bytes. */
static void test_volume_counters(void **state)
{
    struct world *w = *state;
    struct cvd_metrics *m = w->d.metrics;
    struct cvd_volume_metrics *a, *b, *c;
    uint64_t now = cvd_metrics_now_ns();
    char *text;

    add_volume(w, "db1", CVD_VOL_READY);
    a = cvd_metrics_volume_get(m, "db1");
    b = cvd_metrics_volume_get(m, "db1");
    assert_non_null(a);
    assert_ptr_equal(a, b);
    cvd_metrics_attach(m, a);
    cvd_metrics_attach(m, b);
    cvd_metrics_request(m, a, CVD_OP_WRITE, 4096, 0, now);
    cvd_metrics_request(m, b, CVD_OP_WRITE, 65536, 0, now);
    cvd_metrics_request(m, b, CVD_OP_WRITE, 1 << 20, 1, now);
    cvd_metrics_request(m, a, CVD_OP_READ, 512, 0, now);
    cvd_metrics_volume_put(m, a);
    cvd_metrics_volume_put(m, b);
    c = cvd_metrics_volume_get(m, "db1");
    cvd_metrics_request(m, c, CVD_OP_TRIM, 8192, 0, now);
    cvd_metrics_volume_put(m, c);
    text = render(w, CVD_METRICS_VOLUMES);
    has_line(text, "cryptvol_volume_written_bytes_total{volume=\"db1\"} 69632");
    has_line(text, "cryptvol_volume_read_bytes_total{volume=\"db1\"} 512");
    has_line(text, "cryptvol_volume_trimmed_bytes_total{volume=\"db1\"} 8192");
    has_line(text, "cryptvol_volume_requests_total{volume=\"db1\",op=\"write\"} 3");
    has_line(text, "cryptvol_volume_request_errors_total{volume=\"db1\",op=\"write\"} 1");
    has_line(text, "cryptvol_volume_requests_total{volume=\"db1\",op=\"read\"} 1");
    has_line(text, "cryptvol_volume_attaches_total{volume=\"db1\"} 2");
    has_line(text, "cryptvol_nbd_attaches_total 2");
    has_line(text, "cryptvol_nbd_request_duration_seconds_count{op=\"write\"} 3");
    has_line(text, "cryptvol_nbd_request_duration_seconds_count{op=\"trim\"} 1");
    free(text);
}

/* A deleted volume's series go; one made again with its name starts at
 * 0; a connection still holding the old counters can let go safely. */
static void test_forget(void **state)
{
    struct world *w = *state;
    struct cvd_metrics *m = w->d.metrics;
    struct cvd_volume_metrics *old, *fresh;
    char *text;

    add_volume(w, "gone", CVD_VOL_READY);
    old = cvd_metrics_volume_get(m, "gone");
    cvd_metrics_request(m, old, CVD_OP_WRITE, 4096, 0, cvd_metrics_now_ns());
    assert_int_equal(w->d.meta->ops->volume_remove(w->d.meta, "gone"), 0);
    cvd_metrics_volume_forget(m, "gone");
    text = render(w, CVD_METRICS_VOLUMES);
    lacks(text, "volume=\"gone\"");
    free(text);
    add_volume(w, "gone", CVD_VOL_READY);
    fresh = cvd_metrics_volume_get(m, "gone");
    assert_ptr_not_equal(old, fresh);
    cvd_metrics_request(m, old, CVD_OP_WRITE, 1, 0, cvd_metrics_now_ns());
    cvd_metrics_volume_put(m, old);     /* freed here (ASan sees a leak
                                           or a double free otherwise) */
    text = render(w, CVD_METRICS_VOLUMES);
    has_line(text, "cryptvol_volume_written_bytes_total{volume=\"gone\"} 0");
    free(text);
    cvd_metrics_volume_put(m, fresh);
    /* forget of a name never seen is nothing. */
    cvd_metrics_volume_forget(m, "never");
}

/* A store that lists volumes in the reverse of name order (SQLite's is
 * name order; another backend's need not be). */
static const struct cvd_meta_ops *sqlite_ops;
static struct cvd_meta_ops reversed_ops;

static int reversed_list(struct cvd_meta *m, struct cvd_volume_rec **out,
                         size_t *n)
{
    int r = sqlite_ops->volume_list(m, out, n);

    for (size_t i = 0; r == 0 && i < *n / 2; i++) {
        struct cvd_volume_rec t = (*out)[i];

        (*out)[i] = (*out)[*n - 1 - i];
        (*out)[*n - 1 - i] = t;
    }
    return r;
}

/* Volumes of the store never attached show zeros; counters of a name the
 * store does not hold are not shown; each volume gets its own counters
 * in whatever order the store lists them, and the series come in name
 * order; without CVD_METRICS_VOLUMES no series names a volume, and the
 * rest is still there. */
static void test_render_volumes(void **state)
{
    struct world *w = *state;
    struct cvd_volume_metrics *ghost, *a, *b;
    uint64_t now = cvd_metrics_now_ns();
    char *text;

    add_volume(w, "b-vol", CVD_VOL_READY);
    add_volume(w, "a-vol", CVD_VOL_PENDING);
    add_volume(w, "c-vol", "frozen");   /* a state from a newer daemon */
    add_volume(w, "d-vol", CVD_VOL_READY);
    sqlite_ops = w->d.meta->ops;
    reversed_ops = *sqlite_ops;
    reversed_ops.volume_list = reversed_list;
    w->d.meta->ops = &reversed_ops;
    ghost = cvd_metrics_volume_get(w->d.metrics, "not-in-store");
    a = cvd_metrics_volume_get(w->d.metrics, "a-vol");
    b = cvd_metrics_volume_get(w->d.metrics, "b-vol");
    cvd_metrics_request(w->d.metrics, a, CVD_OP_WRITE, 1111, 0, now);
    cvd_metrics_request(w->d.metrics, b, CVD_OP_WRITE, 2222, 0, now);
    cvd_metrics_request(w->d.metrics, ghost, CVD_OP_WRITE, 3333, 0, now);
    text = render(w, CVD_METRICS_VOLUMES);
    has_line(text, "cryptvol_volume_written_bytes_total{volume=\"a-vol\"} 1111");
    has_line(text, "cryptvol_volume_written_bytes_total{volume=\"b-vol\"} 2222");
    has_line(text, "cryptvol_volume_written_bytes_total{volume=\"c-vol\"} 0");
    has_line(text, "cryptvol_volume_written_bytes_total{volume=\"d-vol\"} 0");
    has_line(text, "cryptvol_volume_attaches_total{volume=\"a-vol\"} 0");
    has_line(text, "cryptvol_volume_requests_total{volume=\"c-vol\",op=\"flush\"} 0");
    lacks(text, "not-in-store");
    has_line(text, "cryptvol_volumes{state=\"Available\"} 2");
    has_line(text, "cryptvol_volumes{state=\"Pending\"} 1");
    has_line(text, "cryptvol_volumes{state=\"Creating\"} 0");
    has_line(text, "cryptvol_volumes{state=\"frozen\"} 1");
    assert_true(strstr(text, "attaches_total{volume=\"a-vol\"}") <
                strstr(text, "attaches_total{volume=\"b-vol\"}"));
    assert_true(strstr(text, "attaches_total{volume=\"c-vol\"}") <
                strstr(text, "attaches_total{volume=\"d-vol\"}"));
    free(text);
    text = render(w, 0);
    lacks(text, "volume=");
    has_line(text, "cryptvol_volumes{state=\"Available\"} 2");
    has_line(text, "cryptvol_nbd_refusals_total{reason=\"access\"} 0");
    has_line(text, "cryptvol_kek_rotation_state{state=\"NoRotation\"} 1");
    has_line(text, "cryptvol_audit_write_failures_total 0");
    free(text);
    w->d.meta->ops = sqlite_ops;
    cvd_metrics_volume_put(w->d.metrics, ghost);
    cvd_metrics_volume_put(w->d.metrics, a);
    cvd_metrics_volume_put(w->d.metrics, b);
}

static void bucket_is(const char *text, const char *le, unsigned n)
{
    char line[160];

    snprintf(line, sizeof line, "cryptvol_nbd_request_duration_seconds_"
             "bucket{op=\"flush\",le=\"%s\"} %u", le, n);
    has_line(text, line);
}

/* le is "less than or equal": a request in the future of its start (a
 * clock going backwards) counts 0 s, in the first bucket; one of 20 s is
 * above every bound.  The sum is in seconds. */
static void test_latency(void **state)
{
    struct world *w = *state;
    struct cvd_metrics *m = w->d.metrics;
    uint64_t now = cvd_metrics_now_ns();
    char *text;

    cvd_metrics_request(m, NULL, CVD_OP_FLUSH, 0, 0, now + 1000000000u);
    cvd_metrics_request(m, NULL, CVD_OP_FLUSH, 0, 0, now - 20000000000u);
    text = render(w, 0);
    bucket_is(text, "5e-05", 1);
    bucket_is(text, "10", 1);
    bucket_is(text, "+Inf", 2);
    has_line(text, "cryptvol_nbd_request_duration_seconds_count{op=\"flush\"} 2");
    assert_non_null(strstr(text, "cryptvol_nbd_request_duration_seconds_sum"
                                 "{op=\"flush\"} 20."));
    free(text);
}

/* Refusals by reason, connections and TLS sessions as they come and go. */
static void test_events(void **state)
{
    struct world *w = *state;
    struct cvd_metrics *m = w->d.metrics;
    char *text;

    cvd_metrics_refused(m, CVD_REFUSED_ACCESS);
    cvd_metrics_refused(m, CVD_REFUSED_ACCESS);
    cvd_metrics_refused(m, CVD_REFUSED_WRONG_KEY);
    cvd_metrics_nbd_connection(m, 1);
    cvd_metrics_nbd_connection(m, 1);
    cvd_metrics_nbd_connection(m, -1);
    cvd_metrics_tls_handshake(m, CVD_TLS_NBD, 1);
    cvd_metrics_tls_handshake(m, CVD_TLS_NBD, 1);
    cvd_metrics_tls_handshake(m, CVD_TLS_NBD, 0);
    cvd_metrics_tls_closed(m, CVD_TLS_NBD);
    cvd_metrics_tls_handshake(m, CVD_TLS_ADMIN, 0);
    text = render(w, 0);
    has_line(text, "cryptvol_nbd_refusals_total{reason=\"access\"} 2");
    has_line(text, "cryptvol_nbd_refusals_total{reason=\"wrong_key\"} 1");
    has_line(text, "cryptvol_nbd_refusals_total{reason=\"tls_required\"} 0");
    has_line(text, "cryptvol_nbd_connections 1");
    has_line(text, "cryptvol_nbd_connections_accepted_total 2");
    has_line(text, "cryptvol_tls_sessions{server=\"nbd\"} 1");
    has_line(text, "cryptvol_tls_sessions_established_total{server=\"nbd\"} 2");
    has_line(text, "cryptvol_tls_handshake_failures_total{server=\"nbd\"} 1");
    has_line(text, "cryptvol_tls_handshake_failures_total{server=\"admin\"} 1");
    has_line(text, "cryptvol_tls_sessions{server=\"admin\"} 0");
    free(text);
}

/* Audit events that cannot be written are counted, and only those: the
 * file is limited to its size (RLIMIT_FSIZE), so the next append fails
 * with EFBIG as on a full disk. */
static void test_audit_failures(void **state)
{
    struct world *w = *state;
    struct rlimit old, lim;
    char path[128];
    struct stat st;
    char *text;

    assert_int_equal(cvd_audit_open(w->dir, &w->d.audit), 0);
    assert_int_equal(cvd_audit(w->d.audit, "test", "volume.create",
                               "volume/x", 1, NULL), 0);
    snprintf(path, sizeof path, "%s/audit.log", w->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)st.st_size;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    assert_int_equal(cvd_audit(w->d.audit, "test", "volume.delete",
                               "volume/x", 1, NULL), -EFBIG);
    assert_int_equal(cvd_audit(w->d.audit, "test", "volume.delete",
                               "volume/x", 1, NULL), -EFBIG);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_int_equal(cvd_audit(w->d.audit, "test", "volume.delete",
                               "volume/x", 1, NULL), 0);
    text = render(w, 0);
    has_line(text, "cryptvol_audit_write_failures_total 2");
    free(text);
    cvd_audit_close(w->d.audit);
    w->d.audit = NULL;
}

/* Without a registry (unit tests of other parts, fuzzers) nothing is
 * recorded, nothing crashes, and the exposition is all zeros. */
static void test_no_registry(void **state)
{
    struct world *w = *state;
    struct cvd_metrics *m = w->d.metrics;
    char *text;

    w->d.metrics = NULL;
    assert_null(cvd_metrics_volume_get(NULL, "x"));
    cvd_metrics_request(NULL, NULL, CVD_OP_READ, 1, 0, 0);
    cvd_metrics_attach(NULL, NULL);
    cvd_metrics_refused(NULL, CVD_REFUSED_ACCESS);
    cvd_metrics_tls_handshake(NULL, CVD_TLS_NBD, 1);
    cvd_metrics_volume_forget(NULL, "x");
    add_volume(w, "v", CVD_VOL_READY);
    text = render(w, CVD_METRICS_VOLUMES);
    has_line(text, "cryptvol_volume_attaches_total{volume=\"v\"} 0");
    has_line(text, "cryptvol_nbd_attaches_total 0");
    free(text);
    w->d.metrics = m;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_labels),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_bad_utf8),
        cmocka_unit_test(test_family_rules),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test_setup_teardown(test_volume_counters, world_setup,
                                        world_teardown),
        cmocka_unit_test_setup_teardown(test_forget, world_setup,
                                        world_teardown),
        cmocka_unit_test_setup_teardown(test_render_volumes, world_setup,
                                        world_teardown),
        cmocka_unit_test_setup_teardown(test_latency, world_setup,
                                        world_teardown),
        cmocka_unit_test_setup_teardown(test_events, world_setup,
                                        world_teardown),
        cmocka_unit_test_setup_teardown(test_audit_failures, world_setup,
                                        world_teardown),
        cmocka_unit_test_setup_teardown(test_no_registry, world_setup,
                                        world_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
