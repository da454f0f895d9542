/* The peer port (daemon/peer/peer.h) over real TLS on 127.0.0.1, with
 * certificates from cv_tls_init_dir and cv_tls_issue_dir in a scratch
 * directory, and a metadata store whose node_get this test answers:
 *  - a member's calls work: PING, a registered handler with a large
 *    payload (the peer's name reaches it), handler errors arrive as errno
 *    and message, a type without handler is EOPNOTSUPP;
 *  - refused, each counted by its reason: a valid certificate of a
 *    non-member, a removed node, a certificate from another CA, no client
 *    certificate, plaintext bytes, membership that cannot be checked; a
 *    TLS 1.2-only client fails the handshake;
 *  - an oversize frame header closes the connection with a log line
 *    naming the peer; a record that does not decrypt is counted;
 *  - the client refuses a server whose certificate is not the node asked
 *    for (though it is from the cluster CA);
 *  - the counters of both sides (servers.peer and the per-peer rows) are
 *    exactly what happened; stop returns with connections open;
 *  - streams: 1000 pipelined requests answered in order, a request with no
 *    answer times out in its time and breaks the stream, close fails what
 *    is in flight with ECANCELED, 8 MiB to a BULK handler not in locked
 *    memory, and the rate to a handler that discards (CVD_PEER_BENCH). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "admin/admin.h"
#include "core/error.h"
#include "core/secmem.h"
#include "daemon.h"
#include "log.h"
#include "meta/meta.h"
#include "metrics/metrics.h"
#include "peer/peer.h"
#include "tls/tls.h"

static char tmp[128];

/* ---- a metadata store that knows a few nodes --------------------------- */

static int store_down;          /* node_get fails as an unreachable etcd */
static char n1_address[64];     /* where the server n1 listens */

static int fake_node_get(struct cvd_meta *m, const char *name,
                         struct cvd_node_rec *out)
{
    static const struct { const char *name; enum cvd_node_state st; } nodes[] = {
        { "n1", CVD_NODE_MEMBER }, { "n2", CVD_NODE_MEMBER },
        { "n5", CVD_NODE_JOINING }, { "n4", CVD_NODE_REMOVED },
    };

    (void)m;
    if (store_down)
        return cv_error(-ENOTCONN, "metadata store unreachable: etcd "
                        "https://127.0.0.1:1: connection refused");
    for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++)
        if (!strcmp(nodes[i].name, name)) {
            snprintf(out->name, sizeof out->name, "%s", name);
            out->state = nodes[i].st;
            snprintf(out->address, sizeof out->address, "%s",
                     !strcmp(name, "n1") ? n1_address : "127.0.0.1:1");
            return 0;
        }
    return cv_error(-ENOENT, "node %s: no such node", name);
}

/* The admin API's start recovers volumes: there are none. */
static int fake_volume_list(struct cvd_meta *m, struct cvd_volume_rec **out,
                            size_t *n)
{
    (void)m;
    *out = NULL;
    *n = 0;
    return 0;
}

static struct cvd_meta_ops fake_ops = { .kind = "fake",
                                        .node_get = fake_node_get,
                                        .volume_list = fake_volume_list };
static struct cvd_meta fake_meta = { .ops = &fake_ops, .clustered = 1 };

/* ---- two nodes: a server n1 and clients -------------------------------- */

static struct cvd server_d;
static struct cvd_peer *server;

static void init_node(struct cvd *d, const char *name, const char *dir)
{
    static char dirs[64][256];
    static int ndirs;
    char *path = dirs[ndirs++ % 64];

    memset(d, 0, sizeof *d);
    snprintf(path, 256, "%s/%s", tmp, dir);
    d->cfg.node_name = (char *)name;
    d->cfg.peer_tls_dir = path;
    d->cfg.etcd_endpoints = (char *)"https://127.0.0.1:1";
    d->meta = &fake_meta;
    assert_int_equal(cvd_metrics_new(&d->metrics), 0);
}

static void path_of(char buf[PATH_MAX], const char *dir, const char *file)
{
    snprintf(buf, PATH_MAX, "%.128s/%.64s/%.64s", tmp, dir, file);
}

static void copy(const char *from_dir, const char *from, const char *to_dir,
                 const char *to)
{
    char a[PATH_MAX], b[PATH_MAX], buf[65536];
    int in, out;
    ssize_t n;

    path_of(a, from_dir, from);
    path_of(b, to_dir, to);
    in = open(a, O_RDONLY);
    out = open(b, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(in >= 0 && out >= 0);
    while ((n = read(in, buf, sizeof buf)) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    close(in);
    close(out);
}

static void issue(const char *ca, const char *dir, const char *name)
{
    char a[PATH_MAX], b[PATH_MAX];

    snprintf(a, sizeof a, "%.128s/%.64s", tmp, ca);
    snprintf(b, sizeof b, "%.128s/%.64s", tmp, dir);
    if (cv_tls_issue_dir(a, b, name, NULL, 0) < 0)
        fail_msg("tls issue %s: %s", name, cv_last_error());
}

/* A client directory that trusts the cluster CA but shows cert_dir's
 * certificate (NULL: none). */
static void mixed_dir(const char *dir, const char *cert_dir)
{
    char p[PATH_MAX];

    snprintf(p, sizeof p, "%.128s/%.64s", tmp, dir);
    assert_int_equal(mkdir(p, 0700), 0);
    copy("ca", "ca-cert.pem", dir, "ca-cert.pem");
    if (cert_dir) {
        copy(cert_dir, "client-cert.pem", dir, "client-cert.pem");
        copy(cert_dir, "client-key.pem", dir, "client-key.pem");
    }
}

static int group_setup(void **state)
{
    char ca[PATH_MAX], other[PATH_MAX];

    (void)state;
    cvd_log_init(LOG_INFO);
    snprintf(tmp, sizeof tmp, "/tmp/test-peer-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    snprintf(ca, sizeof ca, "%s/ca", tmp);
    snprintf(other, sizeof other, "%s/other", tmp);
    assert_int_equal(cv_tls_init_dir(ca, NULL, NULL), 0);
    assert_int_equal(cv_tls_init_dir(other, NULL, NULL), 0);
    issue("ca", "n1", "n1");
    issue("ca", "n2", "n2");
    issue("ca", "n3", "n3");        /* valid, never added */
    issue("ca", "n4", "n4");        /* removed */
    issue("other", "x2", "n2");     /* "n2", but from another CA */
    mixed_dir("otherca", "x2");
    mixed_dir("nocert", NULL);
    init_node(&server_d, "n1", "n1");
    server_d.cfg.peer_listen = (char *)"127.0.0.1:0";
    if (cvd_peer_start(&server_d, NULL, NULL, &server) < 0)
        fail_msg("peer start: %s", cv_last_error());
    snprintf(n1_address, sizeof n1_address, "%s", cvd_peer_bound(server));
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[PATH_MAX + 16];

    (void)state;
    cvd_peer_stop(server);
    cvd_metrics_free(server_d.metrics);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return 0;
}

/* ---- reading the counters ---------------------------------------------- */

static int64_t stat_of(struct cvd *d, const char *a, const char *b,
                       const char *c)
{
    json_object *o, *v;
    int64_t n = -1;

    assert_int_equal(cvd_metrics_stats(d, &o), 0);
    if (json_object_object_get_ex(o, a, &v) &&
        (!b || json_object_object_get_ex(v, b, &v)) &&
        (!c || json_object_object_get_ex(v, c, &v)))
        n = json_object_get_int64(v);
    json_object_put(o);
    return n;
}

#define PEER_STAT(d, k) stat_of(d, "servers", "peer", k)

/* A string of servers.peer ("TlsMode"). */
static const char *stat_str(struct cvd *d, const char *k)
{
    static char buf[64];
    json_object *o, *v;

    assert_int_equal(cvd_metrics_stats(d, &o), 0);
    buf[0] = '\0';
    if (json_object_object_get_ex(o, "servers", &v) &&
        json_object_object_get_ex(v, "peer", &v) &&
        json_object_object_get_ex(v, k, &v))
        snprintf(buf, sizeof buf, "%s", json_object_get_string(v));
    json_object_put(o);
    return buf;
}

static int64_t refused_of(struct cvd *d, const char *k)
{
    json_object *o, *v;
    int64_t n = -1;

    assert_int_equal(cvd_metrics_stats(d, &o), 0);
    if (json_object_object_get_ex(o, "servers", &v) &&
        json_object_object_get_ex(v, "peer", &v) &&
        json_object_object_get_ex(v, "Refused", &v) &&
        json_object_object_get_ex(v, k, &v))
        n = json_object_get_int64(v);
    json_object_put(o);
    return n;
}

/* The per-peer row whose name (or, with by_address, address) is key. */
static int64_t row_of(struct cvd *d, const char *key, int by_address,
                      const char *field)
{
    json_object *o, *rows, *row, *v;
    int64_t n = -1;

    assert_int_equal(cvd_metrics_stats(d, &o), 0);
    assert_true(json_object_object_get_ex(o, "peers", &rows));
    for (size_t i = 0; i < json_object_array_length(rows); i++) {
        row = json_object_array_get_idx(rows, i);
        json_object_object_get_ex(row, by_address ? "address" : "name", &v);
        if (!v || strcmp(json_object_get_string(v), key))
            continue;
        if (by_address && json_object_object_get_ex(row, "name", &v) && v)
            continue;       /* a named row that came from this address */
        if (json_object_object_get_ex(row, field, &v))
            n = json_object_get_int64(v);
    }
    json_object_put(o);
    return n;
}

/* The server counts on its connection's thread: wait for it. */
static void wait_refused(const char *reason, int64_t want)
{
    for (int i = 0; i < 500 && refused_of(&server_d, reason) != want; i++)
        poll(NULL, 0, 10);
    assert_int_equal(refused_of(&server_d, reason), want);
}

static void wait_stat(const char *key, int64_t want)
{
    for (int i = 0; i < 500 && PEER_STAT(&server_d, key) != want; i++)
        poll(NULL, 0, 10);
    assert_int_equal(PEER_STAT(&server_d, key), want);
}

static void expect_msg(const char *want)
{
    if (!strstr(cv_last_error(), want))
        fail_msg("error \"%s\" does not say \"%s\"", cv_last_error(), want);
}

/* ---- a member's calls -------------------------------------------------- */

#define ECHO 0x0100
#define FAILS 0x0101

static char seen_peer[64];

/* Answers the request reversed, in locked memory. */
static int echo(void *arg, const char *peer, const void *req, size_t len,
                struct cvd_peer_reply *reply)
{
    const uint8_t *in = req;
    uint8_t *out;

    (void)arg;
    snprintf(seen_peer, sizeof seen_peer, "%s", peer);
    out = cv_secmem_alloc(len);
    if (!out)
        return -ENOMEM;
    for (size_t i = 0; i < len; i++)
        out[i] = in[len - 1 - i];
    reply->data = out;
    reply->len = len;
    reply->secure = 1;
    reply->type = ECHO + 0x10;
    return 0;
}

static int fails(void *arg, const char *peer, const void *req, size_t len,
                 struct cvd_peer_reply *reply)
{
    (void)arg; (void)peer; (void)req; (void)len;
    reply->data = malloc(10);   /* freed by the server: it failed */
    reply->len = 10;
    return cv_error(-EKEYREJECTED, "KEK generation 7: this node does not "
                    "hold it");
}

static void test_member_calls(void **state)
{
    struct cvd c;
    void *resp = (void *)1;
    size_t len = 99, big = 8u << 20;
    uint16_t type = 0;
    uint8_t *req;
    int r;

    (void)state;
    init_node(&c, "n2", "n2");
    r = cvd_peer_call(&c, "n1", cvd_peer_bound(server), CVD_PEER_PING, NULL,
                      0, &resp, &len, &type);
    if (r < 0)
        fail_msg("PING: %s", cv_last_error());
    assert_null(resp);
    assert_int_equal(len, 0);
    assert_int_equal(type, CVD_PEER_PING);

    assert_int_equal(cvd_peer_handle(server, ECHO, echo, NULL), 0);
    req = malloc(big);
    for (size_t i = 0; i < big; i++)
        req[i] = (uint8_t)(i * 7 + i / 4096);
    r = cvd_peer_call(&c, "n1", cvd_peer_bound(server), ECHO, req, big,
                      &resp, &len, &type);
    if (r < 0)
        fail_msg("ECHO: %s", cv_last_error());
    assert_int_equal(len, big);
    assert_int_equal(type, ECHO + 0x10);
    for (size_t i = 0; i < big; i++)
        if (((uint8_t *)resp)[i] != req[big - 1 - i])
            fail_msg("byte %zu of the answer is wrong", i);
    assert_string_equal(seen_peer, "n2");
    cv_secmem_free(resp, len);
    free(req);

    assert_int_equal(cvd_peer_handle(server, FAILS, fails, NULL), 0);
    r = cvd_peer_call(&c, "n1", cvd_peer_bound(server), FAILS, "x", 1,
                      &resp, &len, &type);
    assert_int_equal(r, -EKEYREJECTED);
    expect_msg("peer n1 (127.0.0.1:");
    expect_msg("): KEK generation 7: this node does not hold it");
    assert_null(resp);

    r = cvd_peer_call(&c, "n1", cvd_peer_bound(server), 0x7777, NULL, 0,
                      &resp, &len, &type);
    assert_int_equal(r, -EOPNOTSUPP);
    expect_msg("no handler for message type 0x7777");

    /* Four calls, four sessions, each closed: on both sides. */
    assert_int_equal(stat_of(&c, "servers", "peer", "TlsTxSw"), 4);
    assert_int_equal(stat_of(&c, "servers", "peer", "TlsCurrTxSw"), 0);
    assert_int_equal(row_of(&c, "n1", 0, "TlsTxSw"), 4);
    wait_stat("TlsCurrRxSw", 0);
    assert_int_equal(row_of(&server_d, "n2", 0, "TlsRxSw"), 4);
    assert_int_equal(row_of(&server_d, "n2", 0, "TlsCurrRxSw"), 0);
    cvd_metrics_free(c.metrics);
}

/* STATS answers this node's JSON, and a Joining node may call. */
static void test_stats_from_joining(void **state)
{
    struct cvd c;
    json_object *o, *v;
    void *resp;
    size_t len;
    uint16_t type;

    (void)state;
    issue("ca", "n5", "n5");
    init_node(&c, "n5", "n5");
    if (cvd_peer_call(&c, "n1", cvd_peer_bound(server), CVD_PEER_STATS, NULL,
                      0, &resp, &len, &type) < 0)
        fail_msg("STATS: %s", cv_last_error());
    assert_int_equal(type, CVD_PEER_STATS);
    {
        char *text = strndup(resp, len);

        o = json_tokener_parse(text);
        free(text);
    }
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "node", &v));
    assert_string_equal(json_object_get_string(v), "n1");
    assert_true(json_object_object_get_ex(o, "servers", &v));
    assert_true(json_object_object_get_ex(v, "peer", &v));
    /* The call asking is the session open now. */
    assert_true(json_object_object_get_ex(v, "TlsCurrRxSw", &v));
    assert_int_equal(json_object_get_int64(v), 1);
    json_object_put(o);
    cv_secmem_free(resp, len);
    cvd_metrics_free(c.metrics);
}

/* ---- refusals ---------------------------------------------------------- */

static void call_refused(const char *dir, const char *cn, int want,
                         const char *msg)
{
    struct cvd c;
    void *resp;
    size_t len;
    uint16_t type;

    init_node(&c, cn, dir);
    assert_int_equal(cvd_peer_call(&c, "n1", cvd_peer_bound(server),
                                   CVD_PEER_PING, NULL, 0, &resp, &len,
                                   &type), want);
    expect_msg(msg);
    cvd_metrics_free(c.metrics);
}

static void test_not_member(void **state)
{
    int64_t before = row_of(&server_d, "127.0.0.1", 1, "refused");

    (void)state;
    call_refused("n3", "n3", -EACCES, "refused: n3 is not a member of the "
                 "cluster");
    wait_refused("notMember", 1);
    call_refused("n4", "n4", -EACCES, "refused: n4 is removed from the "
                 "cluster");
    wait_refused("removed", 1);
    /* Refused ones are rows by address, not by the name they claim. */
    assert_int_equal(row_of(&server_d, "127.0.0.1", 1, "refused"),
                     (before < 0 ? 0 : before) + 2);
    assert_int_equal(row_of(&server_d, "n3", 0, "TlsTxSw"), -1);
}

/* stderr into a file while a test looks at the log lines. */
static int saved_stderr = -1;

static void capture_start(void)
{
    char log[PATH_MAX];
    int fd;

    snprintf(log, sizeof log, "%.128s/log", tmp);
    fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
}

static char *capture_text(void)
{
    static char text[1 << 16];
    char log[PATH_MAX];
    ssize_t n;
    int fd;

    snprintf(log, sizeof log, "%.128s/log", tmp);
    fd = open(log, O_RDONLY);
    n = read(fd, text, sizeof text - 1);
    text[n > 0 ? n : 0] = '\0';
    close(fd);
    return text;
}

static void capture_stop(void)
{
    dup2(saved_stderr, 2);
    close(saved_stderr);
}

static int count_of(const char *text, const char *what)
{
    int n = 0;

    for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

/* A stranger retrying is counted each time and logged once a minute:
 * n6's first refusal is logged, the next two are not; n3, refused in
 * test_not_member less than a minute ago, is not logged again. */
static void test_refusals_logged_once(void **state)
{
    int64_t before = refused_of(&server_d, "notMember");
    char *text;

    (void)state;
    issue("ca", "n6", "n6");
    capture_start();
    for (int i = 0; i < 3; i++)
        call_refused("n6", "n6", -EACCES, "n6 is not a member");
    call_refused("n3", "n3", -EACCES, "n3 is not a member");
    wait_refused("notMember", before + 4);
    text = capture_text();
    capture_stop();
    if (count_of(text, "(n6): refused: not a member of the cluster") != 1 ||
        count_of(text, "(n3): refused") != 0)
        fail_msg("log: %s", text);
}

static void test_store_down(void **state)
{
    (void)state;
    store_down = 1;
    call_refused("n2", "n2", -EACCES, "n2 is not known to be a member now");
    store_down = 0;
    wait_refused("unverified", 1);
}

static void test_other_ca(void **state)
{
    int64_t failed = PEER_STAT(&server_d, "TlsHandshakeFail");

    (void)state;
    /* The client finishes its side of TLS 1.3 before the server checks
     * its certificate: it learns of the refusal from the alert. */
    call_refused("otherca", "n2", -EPROTO, "alert unknown ca");
    wait_refused("otherCa", 1);
    wait_stat("TlsHandshakeFail", failed + 1);
}

static void test_no_cert(void **state)
{
    (void)state;
    call_refused("nocert", "n2", -EPROTO, "alert certificate required");
    wait_refused("noCertificate", 1);
}

static int tcp_connect(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    const char *port = strrchr(cvd_peer_bound(server), ':') + 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sin_port = htons((uint16_t)atoi(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* The server hangs up: a read gives EOF (or a reset) within 5 s. */
static void expect_closed(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char b[256];

    assert_int_equal(poll(&p, 1, 5000), 1);
    while (read(fd, b, sizeof b) > 0)
        ;
}

static void test_plaintext(void **state)
{
    const char req[] = "GET /v1/status HTTP/1.1\r\nHost: n1\r\n\r\n";
    int fd = tcp_connect();

    (void)state;
    assert_int_equal(write(fd, req, sizeof req - 1), sizeof req - 1);
    expect_closed(fd);
    close(fd);
    wait_refused("plaintext", 1);
}

/* ---- a raw TLS client, for what cvd_peer_call never sends ------------- */

static SSL *raw_tls(const char *dir, int max_version, int *fdp)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char p[PATH_MAX];
    SSL *ssl;

    SSL_CTX_set_max_proto_version(ctx, max_version);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    path_of(p, dir, "ca-cert.pem");
    assert_int_equal(SSL_CTX_load_verify_file(ctx, p), 1);
    path_of(p, dir, "client-cert.pem");
    assert_int_equal(SSL_CTX_use_certificate_file(ctx, p, SSL_FILETYPE_PEM), 1);
    path_of(p, dir, "client-key.pem");
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, p, SSL_FILETYPE_PEM), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    *fdp = tcp_connect();
    ssl = SSL_new(ctx);
    SSL_CTX_free(ctx);
    SSL_set_fd(ssl, *fdp);
    return ssl;
}

static void test_tls12_refused(void **state)
{
    int64_t failed = PEER_STAT(&server_d, "TlsHandshakeFail");
    int fd;
    SSL *ssl = raw_tls("n2", TLS1_2_VERSION, &fd);

    (void)state;
    assert_int_not_equal(SSL_connect(ssl), 1);
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    wait_stat("TlsHandshakeFail", failed + 1);
}

/* A member (n2) that sends a 16-byte header announcing 16 MiB + 1: the
 * connection closes and the log names the peer and the reason. */
static void test_oversize_frame(void **state)
{
    uint8_t hdr[16] = { 'C', 'V', 'P', '1', 0, 2, 0, 0 };
    uint32_t len = htonl(CVD_PEER_MAX_PAYLOAD + 1), id = htonl(9);
    char log[PATH_MAX], text[4096] = "";
    int fd, saved, lfd;
    SSL *ssl = raw_tls("n2", TLS1_3_VERSION, &fd);
    ssize_t n;

    (void)state;
    memcpy(hdr + 8, &len, 4);
    memcpy(hdr + 12, &id, 4);
    snprintf(log, sizeof log, "%s/log", tmp);
    lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    saved = dup(2);
    dup2(lfd, 2);
    assert_int_equal(SSL_connect(ssl), 1);
    assert_int_equal(SSL_write(ssl, hdr, sizeof hdr), sizeof hdr);
    assert_true(SSL_read(ssl, text, sizeof text) <= 0);
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    /* The server logs before it closes; give its thread a moment. */
    for (int i = 0; i < 200 && !strstr(text, "bad frame"); i++) {
        int rfd = open(log, O_RDONLY);
        n = read(rfd, text, sizeof text - 1);
        text[n > 0 ? n : 0] = '\0';
        close(rfd);
        poll(NULL, 0, 10);
    }
    dup2(saved, 2);
    close(saved);
    close(lfd);
    if (!strstr(text, "(n2): request: bad frame: 16777217 bytes of payload, "
                "more than the 16777216 allowed; closing the connection"))
        fail_msg("log: %s", text);
}

/* A TLS record whose ciphertext was changed on the way: it does not
 * authenticate, the session ends, and it is counted for n2. */
static void test_decrypt_error(void **state)
{
    uint8_t rec[5 + 40] = { 0x17, 0x03, 0x03, 0x00, 40 };
    int64_t before = PEER_STAT(&server_d, "TlsDecryptError");
    int fd;
    SSL *ssl = raw_tls("n2", TLS1_3_VERSION, &fd);

    (void)state;
    assert_int_equal(SSL_connect(ssl), 1);
    for (size_t i = 5; i < sizeof rec; i++)
        rec[i] = (uint8_t)(i * 31);
    assert_int_equal(write(fd, rec, sizeof rec), sizeof rec);
    expect_closed(fd);
    SSL_free(ssl);
    close(fd);
    wait_stat("TlsDecryptError", before + 1);
    assert_int_equal(row_of(&server_d, "n2", 0, "TlsDecryptError"), 1);
}

/* The client asks for n9 at n1's address: n1's certificate is from the
 * cluster CA, but it is not n9; nor n, nor n10 (the whole name compared). */
static void test_wrong_server_name(void **state)
{
    struct cvd c;
    void *resp;
    size_t len;
    uint16_t type;

    (void)state;
    init_node(&c, "n2", "n2");
    assert_int_equal(cvd_peer_call(&c, "n9", cvd_peer_bound(server),
                                   CVD_PEER_PING, NULL, 0, &resp, &len,
                                   &type), -EACCES);
    expect_msg("peer n9 (127.0.0.1:");
    expect_msg("its certificate is for n1, not n9 (refusing it)");
    /* The whole name: neither one the certificate's name begins nor one
     * that begins with it. */
    assert_int_equal(cvd_peer_call(&c, "n", cvd_peer_bound(server),
                                   CVD_PEER_PING, NULL, 0, &resp, &len,
                                   &type), -EACCES);
    expect_msg("its certificate is for n1, not n (refusing it)");
    assert_int_equal(cvd_peer_call(&c, "n10", cvd_peer_bound(server),
                                   CVD_PEER_PING, NULL, 0, &resp, &len,
                                   &type), -EACCES);
    expect_msg("its certificate is for n1, not n10 (refusing it)");
    assert_int_equal(stat_of(&c, "servers", "peer", "TlsHandshakeFail"), 3);
    assert_int_equal(stat_of(&c, "servers", "peer", "TlsTxSw"), 0);
    cvd_metrics_free(c.metrics);
}

/* ---- GET /v1/nodes/NAME/stats: the admin API asks over the peer port -- */

static unsigned http_get(const char *sock, const char *path, json_object **out)
{
    static char resp[1 << 16];
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char head[256];
    size_t got = 0;
    unsigned status = 0;
    ssize_t n;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    snprintf(head, sizeof head, "GET %s HTTP/1.1\r\nHost: localhost\r\n"
             "Connection: close\r\n\r\n", path);
    assert_int_equal(write(fd, head, strlen(head)), (ssize_t)strlen(head));
    while ((n = read(fd, resp + got, sizeof resp - 1 - got)) > 0)
        got += (size_t)n;
    close(fd);
    resp[got] = '\0';
    assert_int_equal(sscanf(resp, "HTTP/1.1 %u", &status), 1);
    assert_non_null(strstr(resp, "\r\n\r\n"));
    *out = json_tokener_parse(strstr(resp, "\r\n\r\n") + 4);
    assert_non_null(*out);
    return status;
}

static const char *str_of(json_object *o, const char *k)
{
    json_object *v;

    return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v)
                                               : "";
}

static void test_admin_remote_stats(void **state)
{
    struct cvd c;
    struct cvd_admin *admin;
    char sock[PATH_MAX];
    json_object *o, *v;

    (void)state;
    init_node(&c, "n2", "n2");
    snprintf(sock, sizeof sock, "%.128s/n2-admin.sock", tmp);
    c.cfg.admin_socket = sock;
    c.cfg.data_dir = tmp;
    pthread_mutex_init(&c.header_lock, NULL);
    pthread_mutex_init(&c.nbd_lock, NULL);
    if (cvd_admin_start(&c, &admin) < 0)
        fail_msg("admin start: %s", cv_last_error());
    /* n1's own stats, as n1 answered them over the peer port. */
    assert_int_equal(http_get(sock, "/v1/nodes/n1/stats", &o), 200);
    assert_string_equal(str_of(o, "node"), "n1");
    assert_true(json_object_object_get_ex(o, "servers", &v));
    assert_true(json_object_object_get_ex(v, "peer", &v));
    assert_true(json_object_object_get_ex(v, "Refused", &v));
    json_object_put(o);
    /* This node's, without a call. */
    assert_int_equal(http_get(sock, "/v1/nodes/n2/stats", &o), 200);
    assert_string_equal(str_of(o, "node"), "n2");
    assert_int_equal(stat_of(&c, "servers", "peer", "TlsTxSw"), 1);
    json_object_put(o);
    assert_int_equal(http_get(sock, "/v1/node/stats", &o), 200);
    assert_string_equal(str_of(o, "node"), "n2");
    json_object_put(o);
    /* No such node; a node that does not answer. */
    assert_int_equal(http_get(sock, "/v1/nodes/n3/stats", &o), 404);
    assert_string_equal(str_of(o, "code"), "NotFound");
    if (!strstr(str_of(o, "error"), "node stats n3: node n3: no such node"))
        fail_msg("%s", str_of(o, "error"));
    json_object_put(o);
    assert_int_equal(http_get(sock, "/v1/nodes/n5/stats", &o), 503);
    assert_string_equal(str_of(o, "code"), "Unavailable");
    if (!strstr(str_of(o, "error"), "node stats n5: peer n5 (127.0.0.1:1): "
                "connect: Connection refused"))
        fail_msg("%s", str_of(o, "error"));
    json_object_put(o);
    assert_int_equal(http_get(sock, "/v1/nodes/-x/stats", &o), 400);
    if (!strstr(str_of(o, "error"), "node \"-x\": not a valid name"))
        fail_msg("%s", str_of(o, "error"));
    json_object_put(o);
    cvd_admin_stop(admin);
    pthread_mutex_destroy(&c.header_lock);
    pthread_mutex_destroy(&c.nbd_lock);
    cvd_metrics_free(c.metrics);
}

/* ---- configuration and names ------------------------------------------- */

static void test_config_refused(void **state)
{
    struct cvd d;
    struct cvd_peer *p;

    (void)state;
    init_node(&d, "n1", "n1");
    d.cfg.peer_listen = (char *)"127.0.0.1:0";
    d.cfg.etcd_endpoints = NULL;
    assert_int_equal(cvd_peer_start(&d, NULL, NULL, &p), -EINVAL);
    expect_msg("peer-listen 127.0.0.1:0 needs etcd-endpoints");
    d.cfg.etcd_endpoints = (char *)"https://127.0.0.1:1";
    d.cfg.peer_tls_dir = NULL;
    assert_int_equal(cvd_peer_start(&d, NULL, NULL, &p), -EINVAL);
    expect_msg("needs peer-tls-dir");
    d.cfg.peer_listen = (char *)"127.0.0.1";
    d.cfg.peer_tls_dir = server_d.cfg.peer_tls_dir;
    assert_int_equal(cvd_peer_start(&d, NULL, NULL, &p), -EINVAL);
    expect_msg("peer-listen \"127.0.0.1\": expected HOST:PORT");
    cvd_metrics_free(d.metrics);
}

static void test_own_name(void **state)
{
    char name[65], dir[PATH_MAX];

    (void)state;
    snprintf(dir, sizeof dir, "%s/n2", tmp);
    assert_int_equal(cvd_peer_own_name(dir, name, sizeof name), 0);
    assert_string_equal(name, "n2");
    snprintf(dir, sizeof dir, "%s/nocert", tmp);
    assert_true(cvd_peer_own_name(dir, name, sizeof name) < 0);
    expect_msg("nocert/server-cert.pem");
}

/* Everything above, as the server counted it: one refusal per reason. */
static void test_counters(void **state)
{
    (void)state;
    assert_int_equal(refused_of(&server_d, "notMember"), 1 + 4);
    assert_int_equal(refused_of(&server_d, "removed"), 1);
    assert_int_equal(refused_of(&server_d, "otherCa"), 1);
    assert_int_equal(refused_of(&server_d, "noCertificate"), 1);
    assert_int_equal(refused_of(&server_d, "plaintext"), 1);
    assert_int_equal(refused_of(&server_d, "unverified"), 1);
    /* otherCa, noCertificate, plaintext, TLS 1.2. */
    assert_int_equal(PEER_STAT(&server_d, "TlsHandshakeFail"), 4);
    assert_int_equal(row_of(&server_d, "127.0.0.1", 1, "TlsHandshakeFail"), 4);
    /* 4 member calls, 1 STATS, 3 + 4 refused after the handshake, the
     * oversize and the decrypt connections, the three wrong-name calls,
     * the admin API's STATS call. */
    assert_int_equal(PEER_STAT(&server_d, "TlsRxSw"),
                     4 + 1 + 3 + 4 + 2 + 3 + 1);
    wait_stat("TlsCurrRxSw", 0);     /* the last one may still be closing */
    assert_int_equal(PEER_STAT(&server_d, "TlsDecryptError"), 1);
    /* n2's own sessions: 4 calls, oversize, decrypt, the wrong-name calls
     * to "n9", "n" and "n10" (n1 admitted n2; n2 then refused n1), the
     * admin API's call (the store-down one was refused before it was
     * admitted). */
    assert_int_equal(row_of(&server_d, "n2", 0, "TlsRxSw"), 4 + 2 + 3 + 1);
}


/* ---- streams: pipelined requests on one connection ---------------------- */

#define SEQ 0x0200          /* BULK: answers the payload's first 4 bytes */
#define HANG 0x0201         /* answers only once released */
#define QSEQ 0x0208         /* SEQ, registered QUICK: answers held */
#define QSLOW 0x0209        /* QSEQ, 50 us a request: the queue fills */
#define QGATE 0x020a        /* QSEQ, once the gate opens */
#define SINK 0x0202         /* BULK: discards, answers nothing */
#define VMLCK 0x0203        /* BULK: answers its payload's sum and VmLck */

static int seq(void *arg, const char *peer, const void *req, size_t len,
               struct cvd_peer_reply *reply)
{
    (void)arg; (void)peer;
    if (len < 4)
        return cv_error(-EINVAL, "SEQ: %zu bytes", len);
    reply->data = malloc(4);
    memcpy(reply->data, req, 4);
    reply->len = 4;
    return 0;
}

static int seq_slow(void *arg, const char *peer, const void *req,
                    size_t len, struct cvd_peer_reply *reply)
{
    poll(NULL, 0, 0);
    usleep(50);
    return seq(arg, peer, req, len, reply);
}

static int gate_closed;

static int seq_gated(void *arg, const char *peer, const void *req,
                     size_t len, struct cvd_peer_reply *reply)
{
    for (int i = 0; i < 10000 && __atomic_load_n(&gate_closed,
                                                  __ATOMIC_RELAXED); i++)
        poll(NULL, 0, 1);
    return seq(arg, peer, req, len, reply);
}

static int hang_released;

static int hang(void *arg, const char *peer, const void *req, size_t len,
                struct cvd_peer_reply *reply)
{
    (void)arg; (void)peer; (void)req; (void)len; (void)reply;
    for (int i = 0; i < 1000 && !__atomic_load_n(&hang_released,
                                                  __ATOMIC_RELAXED); i++)
        poll(NULL, 0, 10);
    return 0;
}

static int sink(void *arg, const char *peer, const void *req, size_t len,
                struct cvd_peer_reply *reply)
{
    (void)arg; (void)peer; (void)req; (void)len; (void)reply;
    return 0;
}

/* This process's locked memory, in KiB. */
static long vmlck_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");

    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmLck: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static int vmlck(void *arg, const char *peer, const void *req, size_t len,
                 struct cvd_peer_reply *reply)
{
    uint64_t out[2] = { 0, (uint64_t)vmlck_kib() };
    const uint8_t *p = req;

    (void)arg; (void)peer;
    for (size_t i = 0; i < len; i++)
        out[0] += p[i];
    reply->data = malloc(sizeof out);
    memcpy(reply->data, out, sizeof out);
    reply->len = sizeof out;
    return 0;
}

struct seen {
    pthread_mutex_t lock;
    unsigned next, bad, errors, done;
    int last_err;
    int64_t at_ms;
    char msg[256];
};

static int64_t mono_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Each answer must be the next index, in order. */
static void seq_done(void *arg, int err, uint16_t type, const void *resp,
                     size_t len)
{
    struct seen *s = arg;
    uint32_t got;

    pthread_mutex_lock(&s->lock);
    s->done++;
    if (err < 0) {
        s->errors++;
        s->last_err = err;
        s->at_ms = mono_ms();
        snprintf(s->msg, sizeof s->msg, "%s", cv_last_error());
    } else if (len != 4 || type != SEQ) {
        s->bad++;
    } else {
        memcpy(&got, resp, 4);
        if (got != s->next)
            s->bad++;
        s->next++;
    }
    pthread_mutex_unlock(&s->lock);
}

static struct cvd_peer_stream *open_stream(struct cvd *c)
{
    struct cvd_peer_stream *st;

    init_node(c, "n2", "n2");
    if (cvd_peer_stream_open(c, "n1", cvd_peer_bound(server), &st) < 0)
        fail_msg("stream open: %s", cv_last_error());
    assert_true(cvd_peer_stream_tls(st));
    assert_false(cvd_peer_stream_broken(st));
    return st;
}

static void test_stream_pipelined(void **state)
{
    struct seen sn = { .lock = PTHREAD_MUTEX_INITIALIZER };
    uint8_t pad[100] = { 0 };
    struct cvd_peer_stream *st;
    struct cvd c;
    void *resp;
    size_t len;

    (void)state;
    assert_int_equal(cvd_peer_handle_flags(server, SEQ, seq, NULL,
                                           CVD_PEER_BULK), 0);
    st = open_stream(&c);
    for (uint32_t i = 0; i < 1000; i++) {
        struct iovec v[2] = { { &i, 4 }, { pad, i % sizeof pad } };

        if (cvd_peer_stream_send(st, SEQ, v, 2, 0, seq_done, &sn) < 0)
            fail_msg("send %u: %s", i, cv_last_error());
    }
    cvd_peer_stream_drain(st);
    assert_int_equal(sn.done, 1000);
    assert_int_equal(sn.errors, 0);
    assert_int_equal(sn.bad, 0);
    assert_int_equal(sn.next, 1000);
    /* Requests the stream cannot frame are refused before anything is
     * queued, with why; the stream goes on. */
    {
        uint8_t b[4] = { 0 };
        struct iovec four[4] = { { b, 1 }, { b, 1 }, { b, 1 }, { b, 1 } };
        struct iovec huge = { b, (size_t)CVD_PEER_MAX_PAYLOAD + 1 };

        assert_int_equal(cvd_peer_stream_post(st, SEQ, four, 4, 0, seq_done,
                                              &sn), -EINVAL);
        expect_msg("of 4 parts (at most 3)");
        assert_int_equal(cvd_peer_stream_send(st, SEQ, four, 1, 0, NULL,
                                              NULL), -EINVAL);
        expect_msg("a request without done");
        assert_int_equal(cvd_peer_stream_post(st, SEQ, &huge, 1, 0, seq_done,
                                              &sn), -EMSGSIZE);
        expect_msg("a frame of 16777217 bytes (at most 16777216)");
        assert_false(cvd_peer_stream_broken(st));
        assert_int_equal(sn.done, 1000);
    }
    /* A handler's error arrives as its errno and message. */
    assert_int_equal(cvd_peer_stream_call(st, FAILS, "x", 1, 0, &resp, &len),
                     -EKEYREJECTED);
    expect_msg("peer n1 (127.0.0.1:");
    expect_msg("KEK generation 7: this node does not hold it");
    assert_false(cvd_peer_stream_broken(st));
    assert_int_equal(cvd_peer_stream_call(st, CVD_PEER_PING, NULL, 0, 0,
                                          &resp, &len), 0);
    assert_int_equal(len, 0);
    free(resp);
    assert_false(cvd_peer_stream_stale(st));
    cvd_peer_stream_close(st);
    cvd_metrics_free(c.metrics);
}

/* Posted by several threads at once: one sender writes the others'
 * frames with its own, a replica's QUICK answers leave together; every
 * request is answered once, each thread's in its order, and no part is
 * used after its done (each buffer is freed there: ASan would see it). */
struct poster {
    struct cvd_peer_stream *st;
    uint16_t type;
    unsigned t, next, bad, done, errors;
    pthread_mutex_t lock;
};

struct posted {
    struct poster *p;
    uint32_t v;
    uint8_t data[];
};

static void posted_done(void *arg, int err, uint16_t type, const void *resp,
                        size_t len)
{
    struct posted *q = arg;
    struct poster *p = q->p;
    uint32_t got = 0;

    (void)type;
    if (err == 0 && len == 4)
        memcpy(&got, resp, 4);
    pthread_mutex_lock(&p->lock);
    p->done++;
    if (err < 0 && !p->errors++)
        fprintf(stderr, "posted: %s\n", cv_last_error());
    else if (len != 4 || got != q->v || got != ((p->t << 24) | p->next))
        p->bad++;
    p->next++;
    pthread_mutex_unlock(&p->lock);
    memset(q, 0xdd, sizeof *q + 4);
    free(q);
}

#define POSTS 1500

static void *post_many(void *arg)
{
    struct poster *p = arg;

    for (uint32_t i = 0; i < (p->type == QGATE ? 16u : POSTS); i++) {
        size_t n = p->type == QGATE ? 1u << 20 : 4 + (i * 37) % 6000;
        struct posted *q = malloc(sizeof *q + n);
        struct iovec v[2];

        q->p = p;
        q->v = (p->t << 24) | i;
        memcpy(q->data, &q->v, 4);
        memset(q->data + 4, (int)i, n - 4);
        v[0] = (struct iovec){ q->data, 4 };
        v[1] = (struct iovec){ q->data + 4, n - 4 };
        if (cvd_peer_stream_post(p->st, p->type, v, 2, 0, posted_done,
                                 q) < 0) {
            free(q);
            pthread_mutex_lock(&p->lock);
            p->errors++;
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

/* Four threads post POSTS requests of type each on st; every one is
 * answered once, in each thread's order. */
static void post_round(struct cvd_peer_stream *st, uint16_t type)
{
    struct poster p[4];
    pthread_t th[4];

    for (unsigned t = 0; t < 4; t++) {
        p[t] = (struct poster){ .st = st, .t = t, .type = type,
                                .lock = PTHREAD_MUTEX_INITIALIZER };
        assert_int_equal(pthread_create(&th[t], NULL, post_many, &p[t]), 0);
    }
    for (unsigned t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    cvd_peer_stream_drain(st);
    for (unsigned t = 0; t < 4; t++) {
        assert_int_equal(p[t].errors, 0);
        assert_int_equal(p[t].bad, 0);
        assert_int_equal(p[t].done, POSTS);
    }
}

static void test_stream_posted_concurrent(void **state)
{
    struct poster p[4];
    pthread_t th[4];
    struct cvd_peer_stream *st;
    struct cvd c;

    (void)state;
    assert_int_equal(cvd_peer_handle_flags(server, QSEQ, seq, NULL,
                                           CVD_PEER_BULK | CVD_PEER_QUICK),
                     0);
    assert_int_equal(cvd_peer_handle_flags(server, QSLOW, seq_slow, NULL,
                                           CVD_PEER_BULK | CVD_PEER_QUICK),
                     0);
    st = open_stream(&c);
    /* Fast answers, then slow ones: the queue full, posters waiting for
     * room, a backlog of unsent frames when the last post comes. */
    post_round(st, QSEQ);
    post_round(st, QSLOW);
    /* The socket full (the replica's handler waits at a gate): the sender
     * waits in its write while the others queue dozens of frames behind
     * it; once the gate opens every one is written and answered. */
    assert_int_equal(cvd_peer_handle_flags(server, QGATE, seq_gated, NULL,
                                           CVD_PEER_BULK | CVD_PEER_QUICK),
                     0);
    __atomic_store_n(&gate_closed, 1, __ATOMIC_RELAXED);
    for (unsigned t = 0; t < 4; t++) {
        p[t] = (struct poster){ .st = st, .t = t, .type = QGATE,
                                .lock = PTHREAD_MUTEX_INITIALIZER };
        assert_int_equal(pthread_create(&th[t], NULL, post_many, &p[t]), 0);
    }
    /* The one writing waits in its write until the gate opens. */
    poll(NULL, 0, 300);
    __atomic_store_n(&gate_closed, 0, __ATOMIC_RELAXED);
    for (unsigned t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    for (int i = 0, all = 0; i < 2000 && !all; i++) {
        all = 1;
        for (unsigned t = 0; t < 4; t++) {
            pthread_mutex_lock(&p[t].lock);
            all &= p[t].done == 16;
            pthread_mutex_unlock(&p[t].lock);
        }
        if (!all)
            poll(NULL, 0, 10);
    }
    for (unsigned t = 0; t < 4; t++) {
        assert_int_equal(p[t].errors, 0);
        assert_int_equal(p[t].bad, 0);
        assert_int_equal(p[t].done, 16);
    }
    /* A lone QUICK request is answered too: its answer is held only
     * until the replica's next read would wait. */
    {
        uint32_t one = 7;
        void *resp;
        size_t len;

        assert_int_equal(cvd_peer_stream_call(st, QSEQ, &one, 4, 3000, &resp,
                                              &len), 0);
        assert_int_equal(len, 4);
        assert_memory_equal(resp, &one, 4);
        free(resp);
    }
    assert_false(cvd_peer_stream_broken(st));
    cvd_peer_stream_close(st);
    cvd_metrics_free(c.metrics);
}

/* A request with no answer times out within its timeout, fails every
 * other in flight, and later sends fail at once. */
static void test_stream_timeout(void **state)
{
    struct seen sn = { .lock = PTHREAD_MUTEX_INITIALIZER };
    struct cvd_peer_stream *st;
    struct cvd c;
    uint32_t i = 0;
    struct iovec v = { &i, 4 };
    int64_t t0, t1;

    (void)state;
    __atomic_store_n(&hang_released, 0, __ATOMIC_RELAXED);
    assert_int_equal(cvd_peer_handle(server, HANG, hang, NULL), 0);
    st = open_stream(&c);
    t0 = mono_ms();
    assert_int_equal(cvd_peer_stream_send(st, HANG, &v, 1, 300, seq_done,
                                          &sn), 0);
    assert_int_equal(cvd_peer_stream_send(st, SEQ, &v, 1, 5000, seq_done,
                                          &sn), 0);
    for (int k = 0; k < 500 && __atomic_load_n(&sn.done, __ATOMIC_RELAXED) < 2;
         k++)
        poll(NULL, 0, 10);
    assert_int_equal(sn.done, 2);
    assert_int_equal(sn.errors, 2);
    t1 = sn.at_ms;
    if (t1 - t0 < 290 || t1 - t0 > 1500)
        fail_msg("timed out after %lld ms, not 300", (long long)(t1 - t0));
    assert_true(cvd_peer_stream_broken(st));
    t0 = mono_ms();
    assert_true(cvd_peer_stream_send(st, SEQ, &v, 1, 0, seq_done, &sn) < 0);
    expect_msg("peer n1 (127.0.0.1:");
    expect_msg("stream broken");
    assert_true(mono_ms() - t0 < 100);
    assert_int_equal(sn.done, 2);
    cvd_peer_stream_close(st);
    __atomic_store_n(&hang_released, 1, __ATOMIC_RELAXED);
    cvd_metrics_free(c.metrics);
}

static int first_err;

static void first_done(void *arg, int err, uint16_t type, const void *resp,
                       size_t len)
{
    (void)type; (void)resp; (void)len;
    if (!first_err && err == -ETIMEDOUT)
        first_err = err;
    seq_done(arg, err, type, resp, len);
}

/* The timed-out request itself fails -ETIMEDOUT, with a message. */
static void test_stream_timeout_errno(void **state)
{
    struct seen sn = { .lock = PTHREAD_MUTEX_INITIALIZER };
    struct cvd_peer_stream *st;
    struct cvd c;

    (void)state;
    __atomic_store_n(&hang_released, 0, __ATOMIC_RELAXED);
    st = open_stream(&c);
    first_err = 0;
    assert_int_equal(cvd_peer_stream_send(st, HANG, NULL, 0, 200, first_done,
                                          &sn), 0);
    cvd_peer_stream_drain(st);
    assert_int_equal(first_err, -ETIMEDOUT);
    if (!strstr(sn.msg, "no answer within 200 ms"))
        fail_msg("%s", sn.msg);
    cvd_peer_stream_close(st);
    __atomic_store_n(&hang_released, 1, __ATOMIC_RELAXED);
    cvd_metrics_free(c.metrics);
}

static void test_stream_close_in_flight(void **state)
{
    struct seen sn = { .lock = PTHREAD_MUTEX_INITIALIZER };
    struct cvd_peer_stream *st;
    struct cvd c;
    int64_t t0;

    (void)state;
    __atomic_store_n(&hang_released, 0, __ATOMIC_RELAXED);
    st = open_stream(&c);
    for (int k = 0; k < 3; k++)
        assert_int_equal(cvd_peer_stream_send(st, HANG, NULL, 0, 0, seq_done,
                                              &sn), 0);
    t0 = mono_ms();
    cvd_peer_stream_close(st);
    assert_true(mono_ms() - t0 < 1000);
    assert_int_equal(sn.done, 3);
    assert_int_equal(sn.errors, 3);
    assert_int_equal(sn.last_err, -ECANCELED);
    if (!strstr(sn.msg, "stream closed"))
        fail_msg("%s", sn.msg);
    __atomic_store_n(&hang_released, 1, __ATOMIC_RELAXED);
    cvd_metrics_free(c.metrics);
}

/* 8 MiB to a BULK handler, in three parts: it arrives whole, and not in
 * locked memory (VmLck does not grow by it while the handler runs). */
static void test_stream_bulk(void **state)
{
    size_t big = 8u << 20;
    uint8_t *buf = malloc(big);
    struct cvd_peer_stream *st;
    struct iovec v[3];
    uint64_t sum = 0, out[2];
    long before;
    struct cvd c;
    void *resp;
    size_t len;

    (void)state;
    for (size_t i = 0; i < big; i++) {
        buf[i] = (uint8_t)(i * 13 + i / 777);
        sum += buf[i];
    }
    v[0] = (struct iovec){ buf, 1000 };
    v[1] = (struct iovec){ buf + 1000, 5u << 20 };
    v[2] = (struct iovec){ buf + 1000 + (5u << 20), big - 1000 - (5u << 20) };
    assert_int_equal(cvd_peer_handle_flags(server, VMLCK, vmlck, NULL,
                                           CVD_PEER_BULK), 0);
    st = open_stream(&c);
    before = vmlck_kib();
    /* As one call's payload. */
    assert_int_equal(cvd_peer_stream_call(st, VMLCK, buf, big, 0, &resp,
                                          &len), 0);
    assert_int_equal(len, sizeof out);
    memcpy(out, resp, sizeof out);
    free(resp);
    assert_true(out[0] == sum);
    if ((long)out[1] - before > 1024)
        fail_msg("VmLck grew from %ld to %ld KiB: the payload was locked",
                 before, (long)out[1]);
    {
        /* In three parts; the answer (a sum, not an index) is "bad" to
         * seq_done, but not an error. */
        struct seen sn = { .lock = PTHREAD_MUTEX_INITIALIZER };

        assert_int_equal(cvd_peer_stream_send(st, VMLCK, v, 3, 0, seq_done,
                                              &sn), 0);
        cvd_peer_stream_drain(st);
        assert_int_equal(sn.done, 1);
        assert_int_equal(sn.errors, 0);
        assert_int_equal(sn.bad, 1);
    }
    cvd_peer_stream_close(st);
    free(buf);
    cvd_metrics_free(c.metrics);
}

static void ignore_done(void *arg, int err, uint16_t type, const void *resp,
                        size_t len)
{
    (void)type; (void)resp; (void)len;
    if (err < 0)
        __atomic_add_fetch((unsigned *)arg, 1, __ATOMIC_RELAXED);
}

/* Throughput to a handler that discards: what bounds replication on one
 * stream.  CVD_PEER_BENCH=SECONDS runs longer; prints MiB/s and req/s. */
static void stream_rate(struct cvd_peer_stream *st, size_t size,
                        double seconds)
{
    uint8_t *buf = calloc(1, size);
    struct iovec v = { buf, size };
    unsigned errors = 0;
    uint64_t n = 0;
    int64_t t0 = mono_ms(), t;

    do {
        for (int k = 0; k < 64; k++, n++)
            assert_int_equal(cvd_peer_stream_send(st, SINK, &v, 1, 0,
                                                  ignore_done, &errors), 0);
        t = mono_ms();
    } while (t - t0 < seconds * 1000);
    cvd_peer_stream_drain(st);
    t = mono_ms();
    assert_int_equal(errors, 0);
    fprintf(stderr, "stream %s: %zu-byte requests: %.0f MiB/s, %.0f "
            "requests/s\n", cvd_peer_stream_tls(st) ? "TLS" : "plain", size,
            (double)n * size / 1048576.0 / ((double)(t - t0) / 1000),
            (double)n / ((double)(t - t0) / 1000));
    free(buf);
}

static void test_stream_throughput(void **state)
{
    const char *env = getenv("CVD_PEER_BENCH");
    double seconds = env ? atof(env) : 0.5;
    struct cvd_peer_stream *st;
    struct cvd c;

    (void)state;
    assert_int_equal(cvd_peer_handle_flags(server, SINK, sink, NULL,
                                           CVD_PEER_BULK), 0);
    st = open_stream(&c);
    stream_rate(st, 1u << 20, seconds);
    stream_rate(st, 4096, seconds);
    cvd_peer_stream_close(st);
    cvd_metrics_free(c.metrics);
}


/* peer-tls: a stream dialled plaintext (off) to a port that is on: HELLO
 * admits n2 (its registered host is 127.0.0.1), PLAIN_OK types work, a
 * type without it is refused and counted, and the switch to require
 * closes the connection and makes streams of the old mode stale. */
static void test_stream_plaintext(void **state)
{
    struct seen sn = { .lock = PTHREAD_MUTEX_INITIALIZER };
    int64_t refused = refused_of(&server_d, "plaintextType");
    struct cvd_peer_stream *st, *tls;
    uint32_t i = 0;
    struct iovec v = { &i, 4 };
    struct cvd c;
    void *resp;
    size_t len;

    (void)state;
    assert_int_equal(cvd_peer_set_tls(server, CVD_PEER_TLS_ON), 0);
    assert_int_equal(cvd_peer_handle_flags(server, SEQ, seq, NULL,
                                           CVD_PEER_BULK | CVD_PEER_PLAIN_OK),
                     0);
    init_node(&c, "n2", "n2");
    c.cfg.peer_tls = CVD_PEER_TLS_OFF;
    if (cvd_peer_stream_open(&c, "n1", cvd_peer_bound(server), &st) < 0)
        fail_msg("plaintext stream: %s", cv_last_error());
    assert_false(cvd_peer_stream_tls(st));
    for (i = 0; i < 100; i++)
        assert_int_equal(cvd_peer_stream_send(st, SEQ, &v, 1, 0, seq_done,
                                              &sn), 0);
    cvd_peer_stream_drain(st);
    assert_int_equal(sn.next, 100);
    assert_int_equal(sn.errors, 0);
    /* Posted by four threads: each frame written by its own sender (under
     * ASan a sender's sendmsg of another's frame reads it after its
     * answer may have freed it), all answered once, in order. */
    assert_int_equal(cvd_peer_handle_flags(server, QSEQ, seq, NULL,
                                           CVD_PEER_BULK | CVD_PEER_QUICK |
                                           CVD_PEER_PLAIN_OK), 0);
    post_round(st, QSEQ);
    assert_int_equal(cvd_peer_handle_flags(server, SINK, sink, NULL,
                                           CVD_PEER_BULK | CVD_PEER_PLAIN_OK),
                     0);
    {
        const char *env = getenv("CVD_PEER_BENCH");

        stream_rate(st, 1u << 20, env ? atof(env) : 0.3);
        stream_rate(st, 4096, env ? atof(env) : 0.3);
    }
    wait_stat("PlainCurr", 1);
    assert_int_equal(row_of(&server_d, "n2", 0, "PlainCurr"), 1);
    assert_int_equal(stat_of(&c, "servers", "peer", "PlainCurr"), 1);
    /* A type that needs TLS: refused, the connection ends. */
    assert_int_equal(cvd_peer_stream_call(st, FAILS, "x", 1, 0, &resp, &len),
                     -EACCES);
    expect_msg("message type 0x0101 needs TLS (this connection is "
               "plaintext)");
    wait_refused("plaintextType", refused + 1);
    cvd_peer_stream_close(st);
    wait_stat("PlainCurr", 0);

    /* require: open plaintext connections close, new ones are refused,
     * streams opened under the old mode are stale. */
    c.peer = server;
    if (cvd_peer_stream_open(&c, "n1", cvd_peer_bound(server), &st) < 0)
        fail_msg("plaintext stream: %s", cv_last_error());
    assert_true(cvd_peer_stream_tls(st));   /* the port's mode: on */
    cvd_peer_stream_close(st);
    c.peer = NULL;
    assert_int_equal(cvd_peer_stream_open(&c, "n1", cvd_peer_bound(server),
                                          &st), 0);
    c.peer = server;
    assert_int_equal(cvd_peer_stream_open(&c, "n1", cvd_peer_bound(server),
                                          &tls), 0);
    assert_false(cvd_peer_stream_stale(tls));
    assert_int_equal(cvd_peer_set_tls(server, CVD_PEER_TLS_REQUIRE), 0);
    assert_true(cvd_peer_stream_stale(tls));
    assert_false(cvd_peer_stream_broken(tls));
    for (int k = 0; k < 500 && !cvd_peer_stream_broken(st); k++)
        poll(NULL, 0, 10);
    assert_true(cvd_peer_stream_broken(st));
    cvd_peer_stream_close(st);
    cvd_peer_stream_close(tls);
    c.peer = NULL;
    assert_int_equal(cvd_peer_stream_open(&c, "n1", cvd_peer_bound(server),
                                          &st), -EACCES);
    expect_msg("refused: plaintext peer connections need peer-tls on or off "
               "on this node");
    assert_true(PEER_STAT(&server_d, "TlsModeChanges") >= 2);
    assert_string_equal(stat_str(&server_d, "TlsMode"), "require");
    cvd_metrics_free(c.metrics);
}

/* Stop while a member holds a connection open and idle. */
static void test_stop_with_open_connection(void **state)
{
    struct cvd d;
    struct cvd_peer *p;
    int fd, i;
    SSL *ssl;
    struct timespec t0, t1;

    (void)state;
    init_node(&d, "n1", "n1");
    d.cfg.peer_listen = (char *)"127.0.0.1:0";
    assert_int_equal(cvd_peer_start(&d, NULL, NULL, &p), 0);
    {
        struct cvd_peer *keep = server;
        server = p;                 /* raw_tls connects to "server" */
        ssl = raw_tls("n2", TLS1_3_VERSION, &fd);
        server = keep;
    }
    assert_int_equal(SSL_connect(ssl), 1);
    for (i = 0; i < 500 && stat_of(&d, "servers", "peer", "TlsCurrRxSw") != 1;
         i++)
        poll(NULL, 0, 10);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cvd_peer_stop(p);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 3);
    assert_int_equal(stat_of(&d, "servers", "peer", "TlsCurrRxSw"), 0);
    SSL_free(ssl);
    close(fd);
    cvd_metrics_free(d.metrics);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_member_calls),
        cmocka_unit_test(test_stats_from_joining),
        cmocka_unit_test(test_not_member),
        cmocka_unit_test(test_refusals_logged_once),
        cmocka_unit_test(test_store_down),
        cmocka_unit_test(test_other_ca),
        cmocka_unit_test(test_no_cert),
        cmocka_unit_test(test_plaintext),
        cmocka_unit_test(test_tls12_refused),
        cmocka_unit_test(test_oversize_frame),
        cmocka_unit_test(test_decrypt_error),
        cmocka_unit_test(test_wrong_server_name),
        cmocka_unit_test(test_admin_remote_stats),
        cmocka_unit_test(test_config_refused),
        cmocka_unit_test(test_own_name),
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_stream_pipelined),
        cmocka_unit_test(test_stream_posted_concurrent),
        cmocka_unit_test(test_stream_timeout),
        cmocka_unit_test(test_stream_timeout_errno),
        cmocka_unit_test(test_stream_close_in_flight),
        cmocka_unit_test(test_stream_bulk),
        cmocka_unit_test(test_stream_throughput),
        cmocka_unit_test(test_stream_plaintext),
        cmocka_unit_test(test_stop_with_open_connection),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
