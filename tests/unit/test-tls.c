/* lib/tls/tls.c: handshakes between cv_tls servers and clients over
 * socketpairs (the server in a thread), with certificates made by
 * cv_tls_init_dir, PSK files in psktool's format, reload, and refusal of
 * bad credentials.  Interop with GnuTLS's gnutls-cli and OpenSSL's s_client
 * over TCP when they are installed. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <poll.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "tls/tls.h"

static const char key_a[] =
    "6b1e2f0c9d8a7b6c5d4e3f201f2e3d4c5b6a79881726354453627180a9b8c7d6";
static const char key_b[] =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
static const char key_c[] =
    "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

static char test_dir[PATH_MAX];

static const char *tpath(const char *name)
{
    static __thread char buf[4][PATH_MAX + 64];
    static __thread int next;
    char *p = buf[next++ % 4];

    snprintf(p, PATH_MAX + 64, "%s/%s", test_dir, name);
    return p;
}

static const char *tpath2(const char *dir, const char *name)
{
    static __thread char buf[4][PATH_MAX + 128];
    static __thread int next;
    char *p = buf[next++ % 4];

    snprintf(p, PATH_MAX + 128, "%s/%s/%s", test_dir, dir, name);
    return p;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    int fd;

    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void copy_file(const char *src, const char *dst, mode_t mode)
{
    char buf[8192];
    ssize_t n;
    int in = open(src, O_RDONLY), out;

    assert_true(in >= 0);
    unlink(dst);
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(out >= 0);
    while ((n = read(in, buf, sizeof buf)) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(fchmod(out, mode), 0);
    close(in);
    close(out);
}

/* A directory with the given CA's ca-cert.pem and, if client_from is set,
 * the client certificate and key from that directory. */
static void make_client_dir(const char *name, const char *ca_from,
                            const char *client_from)
{
    char src[PATH_MAX + 64];

    assert_int_equal(mkdir(tpath(name), 0700), 0);
    snprintf(src, sizeof src, "%s/ca-cert.pem", tpath(ca_from));
    copy_file(src, tpath2(name, "ca-cert.pem"), 0644);
    if (!client_from)
        return;
    snprintf(src, sizeof src, "%s/client-cert.pem", tpath(client_from));
    copy_file(src, tpath2(name, "client-cert.pem"), 0644);
    snprintf(src, sizeof src, "%s/client-key.pem", tpath(client_from));
    copy_file(src, tpath2(name, "client-key.pem"), 0600);
}

static int have(const char *prog)
{
    char cmd[256];

    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

static int group_setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    char psk[512];

    (void)state;
    signal(SIGPIPE, SIG_IGN);       /* a refused peer may close first */
    snprintf(test_dir, sizeof test_dir, "%s/cv-tls-XXXXXX",
             tmp ? tmp : "/tmp");
    if (!mkdtemp(test_dir))
        return -1;
    if (cv_tls_init_dir(tpath("pki"), NULL, NULL) < 0 ||
        cv_tls_init_dir(tpath("other"), NULL, "intruder") < 0) {
        fprintf(stderr, "cv_tls_init_dir: %s\n", cv_last_error());
        return -1;
    }
    make_client_dir("noclient", "pki", NULL);
    make_client_dir("mixed", "pki", "other");
    make_client_dir("trust-other", "other", "pki");
    snprintf(psk, sizeof psk, "alice:%s\nbob:%s\n", key_a, key_b);
    write_text(tpath("keys.psk"), psk, 0600);
    snprintf(psk, sizeof psk, "alice:%s\n", key_c);
    write_text(tpath("wrong.psk"), psk, 0600);
    snprintf(psk, sizeof psk, "carol:%s\n", key_a);
    write_text(tpath("carol.psk"), psk, 0600);
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static int group_teardown(void **state)
{
    (void)state;
    return nftw(test_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* --- handshakes over a socketpair ------------------------------------ */

struct side {
    SSL *ssl;
    int ok;
    char peer[256];
    char err[512];
};

/* The server handshakes and, if that worked, sends one byte: in TLS 1.3
 * the client finishes its handshake before the server has checked the
 * client's certificate, so the client learns the verdict by reading. */
static void *server_main(void *arg)
{
    struct side *s = arg;

    if (SSL_do_handshake(s->ssl) == 1) {
        s->ok = 1;
        cv_tls_peer_name(s->ssl, s->peer, sizeof s->peer);
        SSL_write(s->ssl, "x", 1);
    } else {
        cv_tls_error_string(s->err, sizeof s->err);
    }
    return NULL;
}

static void client_run(struct side *c)
{
    char byte;

    if (SSL_do_handshake(c->ssl) == 1 && SSL_read(c->ssl, &byte, 1) == 1) {
        c->ok = 1;
        cv_tls_peer_name(c->ssl, c->peer, sizeof c->peer);
    } else {
        cv_tls_error_string(c->err, sizeof c->err);
    }
}

/* Handshakes a connection of srv_ssl (made by the caller, may be NULL to
 * make one from srv) against a new connection of cli. */
static void handshake_ssl(struct cv_tls *srv, SSL *srv_ssl, struct cv_tls *cli,
                   struct side *s, struct side *c)
{
    pthread_t th;
    int sv[2];

    memset(s, 0, sizeof *s);
    memset(c, 0, sizeof *c);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                     0);
    s->ssl = srv_ssl ? srv_ssl : cv_tls_ssl_new(srv, sv[0]);
    assert_non_null(s->ssl);
    if (srv_ssl)
        assert_int_equal(SSL_set_fd(srv_ssl, sv[0]), 1);
    c->ssl = cv_tls_ssl_new(cli, sv[1]);
    assert_non_null(c->ssl);
    assert_int_equal(pthread_create(&th, NULL, server_main, s), 0);
    client_run(c);
    SSL_free(c->ssl);
    close(sv[1]);               /* a server still reading sees EOF */
    pthread_join(th, NULL);
    SSL_free(s->ssl);
    close(sv[0]);
    s->ssl = c->ssl = NULL;
}

static void handshake(struct cv_tls *srv, struct cv_tls *cli, struct side *s,
               struct side *c)
{
    handshake_ssl(srv, NULL, cli, s, c);
}

static struct cv_tls *server(const char *dir, const char *psk, int verify_peer)
{
    struct cv_tls_config cfg = {
        .x509_dir = dir ? tpath(dir) : NULL,
        .psk_file = psk ? tpath(psk) : NULL,
        .verify_peer = verify_peer,
    };
    struct cv_tls *t = NULL;

    if (cv_tls_server_new(&cfg, &t) < 0)
        fail_msg("cv_tls_server_new: %s", cv_last_error());
    return t;
}

static struct cv_tls *client(const char *dir, const char *psk, const char *id,
                      const char *host)
{
    struct cv_tls_config cfg = {
        .x509_dir = dir ? tpath(dir) : NULL,
        .psk_file = psk ? tpath(psk) : NULL,
        .psk_identity = id,
        .peer_host = host,
    };
    struct cv_tls *t = NULL;

    if (cv_tls_client_new(&cfg, &t) < 0)
        fail_msg("cv_tls_client_new: %s", cv_last_error());
    return t;
}

/* Runs one handshake and frees both contexts; returns s.ok | c.ok << 1. */
static int try_pair(struct cv_tls *srv, struct cv_tls *cli, struct side *s,
                    struct side *c)
{
    handshake(srv, cli, s, c);
    cv_tls_free(srv);
    cv_tls_free(cli);
    return s->ok | c->ok << 1;
}

/* --- X.509 ----------------------------------------------------------- */

static void test_x509_ok(void **state)
{
    struct side s, c;

    (void)state;
    assert_int_equal(try_pair(server("pki", NULL, 0),
                              client("noclient", NULL, NULL, NULL), &s, &c), 3);
    assert_string_equal(c.peer, "CN=localhost");
    assert_string_equal(s.peer, "anonymous");
}

static void test_x509_verify_peer_ok(void **state)
{
    struct side s, c;

    (void)state;
    assert_int_equal(try_pair(server("pki", NULL, 1),
                              client("pki", NULL, NULL, "localhost"), &s, &c),
                     3);
    assert_string_equal(s.peer, "CN=cryptvol-client");
}

static void test_x509_peer_host(void **state)
{
    struct side s, c;

    (void)state;
    assert_int_equal(try_pair(server("pki", NULL, 0),
                              client("pki", NULL, NULL, "::1"), &s, &c), 3);
    assert_int_equal(try_pair(server("pki", NULL, 0),
                              client("pki", NULL, NULL, "example.com"),
                              &s, &c) & 2, 0);
    assert_non_null(strstr(c.err, "certificate verify failed"));
}

static void test_x509_client_from_other_ca_refused(void **state)
{
    struct side s, c;

    (void)state;
    assert_int_equal(try_pair(server("pki", NULL, 1),
                              client("mixed", NULL, NULL, NULL), &s, &c), 0);
    assert_non_null(strstr(s.err, "certificate verify failed"));
}

static void test_x509_client_without_cert_refused(void **state)
{
    struct side s, c;

    (void)state;
    assert_int_equal(try_pair(server("pki", NULL, 1),
                              client("noclient", NULL, NULL, NULL), &s, &c), 0);
    assert_non_null(strstr(s.err, "certificate"));
}

static void test_x509_server_from_other_ca_refused(void **state)
{
    struct side s, c;

    (void)state;
    assert_int_equal(try_pair(server("pki", NULL, 0),
                              client("trust-other", NULL, NULL, NULL), &s, &c),
                     0);
    assert_non_null(strstr(c.err, "certificate verify failed"));
}

/* --- PSK ------------------------------------------------------------- */

static void test_psk_ok(void **state)
{
    struct side s, c;

    (void)state;
    assert_int_equal(try_pair(server(NULL, "keys.psk", 0),
                              client(NULL, "keys.psk", "bob", NULL), &s, &c),
                     3);
    assert_string_equal(s.peer, "psk:bob");
    assert_string_equal(c.peer, "psk:bob");
    /* The first line when no identity is named. */
    assert_int_equal(try_pair(server(NULL, "keys.psk", 0),
                              client(NULL, "keys.psk", NULL, NULL), &s, &c), 3);
    assert_string_equal(s.peer, "psk:alice");
}

static void test_psk_wrong_key_refused(void **state)
{
    struct side s, c;

    (void)state;
    assert_int_equal(try_pair(server(NULL, "keys.psk", 0),
                              client(NULL, "wrong.psk", NULL, NULL), &s, &c),
                     0);
    assert_non_null(strstr(s.err, "binder"));
}

static void test_psk_unknown_identity_refused(void **state)
{
    struct side s, c;

    (void)state;
    assert_int_equal(try_pair(server(NULL, "keys.psk", 0),
                              client(NULL, "carol.psk", NULL, NULL), &s, &c),
                     0);
    /* With certificates too, the server answers carol with a certificate
     * handshake, and a client with only a PSK must not accept that
     * unverified (it has no CA to check the certificate against). */
    assert_int_equal(try_pair(server("pki", "keys.psk", 0),
                              client(NULL, "carol.psk", NULL, NULL), &s, &c)
                     & 2, 0);
    assert_non_null(strstr(c.err, "certificate verify failed"));
}

/* Both configured: a PSK client needs no certificate even with
 * verify_peer, a certificate client needs no PSK. */
static void test_psk_and_x509(void **state)
{
    struct side s, c;

    (void)state;
    assert_int_equal(try_pair(server("pki", "keys.psk", 1),
                              client(NULL, "keys.psk", "alice", NULL), &s, &c),
                     3);
    assert_string_equal(s.peer, "psk:alice");
    assert_int_equal(try_pair(server("pki", "keys.psk", 1),
                              client("pki", NULL, NULL, NULL), &s, &c), 3);
    assert_string_equal(s.peer, "CN=cryptvol-client");
    assert_int_equal(try_pair(server("pki", "keys.psk", 1),
                              client("noclient", NULL, NULL, NULL), &s, &c), 0);
}

/* --- reload ---------------------------------------------------------- */

/* A server directory "live" with pki's or other's server certificate. */
static void install_server(const char *from)
{
    static const char *const names[] = { "server-cert.pem", "server-key.pem",
                                         "ca-cert.pem" };
    size_t i;

    mkdir(tpath("live"), 0700);
    for (i = 0; i < 3; i++)
        copy_file(tpath2(from, names[i]), tpath2("live", names[i]),
                  i == 1 ? 0600 : 0644);
}

static void test_reload_new_certs(void **state)
{
    struct cv_tls *srv, *trust_pki, *trust_other;
    struct side s, c;
    SSL *early;

    (void)state;
    install_server("pki");
    srv = server("live", NULL, 0);
    trust_pki = client("noclient", NULL, NULL, NULL);
    trust_other = client("trust-other", NULL, NULL, NULL);
    handshake(srv, trust_pki, &s, &c);
    assert_true(s.ok && c.ok);
    early = cv_tls_ssl_new(srv, -1);    /* made before the reload */
    assert_non_null(early);

    install_server("other");
    assert_int_equal(cv_tls_reload(srv), 0);
    handshake(srv, trust_other, &s, &c);
    assert_true(s.ok && c.ok);
    handshake(srv, trust_pki, &s, &c);
    assert_false(c.ok);
    /* A connection keeps the credentials it was made with. */
    handshake_ssl(srv, early, trust_pki, &s, &c);
    assert_true(s.ok && c.ok);

    /* A failed reload keeps the last good credentials. */
    assert_int_equal(unlink(tpath2("live", "server-key.pem")), 0);
    assert_int_equal(cv_tls_reload(srv), -ENOENT);
    assert_non_null(strstr(cv_last_error(), "keeping"));
    assert_non_null(strstr(cv_last_error(), "live/server-key.pem"));
    handshake(srv, trust_other, &s, &c);
    assert_true(s.ok && c.ok);
    cv_tls_free(srv);
    cv_tls_free(trust_pki);
    cv_tls_free(trust_other);
}

struct reloader {
    struct cv_tls *tls;
    int n;
};

static void *reload_loop(void *arg)
{
    struct reloader *r = arg;
    int i;

    for (i = 0; i < r->n; i++)
        if (cv_tls_reload(r->tls) < 0)
            return (void *)1;
    return NULL;
}

/* Connections made while another thread reloads (run under ASan/TSan). */
static void test_reload_races_ssl_new(void **state)
{
    struct reloader r = { .tls = server("pki", "keys.psk", 1), .n = 50 };
    void *ret;
    pthread_t th;
    int i;

    (void)state;
    assert_int_equal(pthread_create(&th, NULL, reload_loop, &r), 0);
    for (i = 0; i < 2000; i++) {
        SSL *ssl = cv_tls_ssl_new(r.tls, -1);
        assert_non_null(ssl);
        SSL_free(ssl);
    }
    pthread_join(th, &ret);
    assert_null(ret);
    cv_tls_free(r.tls);
}

/* --- refused credentials --------------------------------------------- */

static void expect_server_error(const char *dir, const char *psk, int code,
                                const char *want1, const char *want2)
{
    struct cv_tls_config cfg = {
        .x509_dir = dir ? tpath(dir) : NULL,
        .psk_file = psk ? tpath(psk) : NULL,
    };
    struct cv_tls *t = NULL;

    cv_clear_error();
    assert_int_equal(cv_tls_server_new(&cfg, &t), code);
    assert_null(t);
    if (getenv("CV_TLS_TEST_LOG"))
        fprintf(stderr, "%s\n", cv_last_error());
    if (!strstr(cv_last_error(), want1) || !strstr(cv_last_error(), want2))
        fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", cv_last_error(),
                 want1, want2);
}

static void test_permissive_key_refused(void **state)
{
    (void)state;
    install_server("pki");
    assert_int_equal(chmod(tpath2("live", "server-key.pem"), 0640), 0);
    expect_server_error("live", NULL, -EPERM, "live/server-key.pem",
                        "group or others");
    assert_int_equal(chmod(tpath2("live", "server-key.pem"), 0604), 0);
    expect_server_error("live", NULL, -EPERM, "server-key.pem", "chmod 600");
    assert_int_equal(chmod(tpath2("live", "server-key.pem"), 0400), 0);
    cv_tls_free(server("live", NULL, 0));       /* stricter is fine */
}

static void test_permissive_psk_refused(void **state)
{
    char text[128];

    (void)state;
    snprintf(text, sizeof text, "alice:%s\n", key_a);
    write_text(tpath("open.psk"), text, 0644);
    expect_server_error(NULL, "open.psk", -EPERM, "open.psk",
                        "group or others");
}

static void test_missing_files(void **state)
{
    (void)state;
    install_server("pki");
    unlink(tpath2("live", "server-key.pem"));
    expect_server_error("live", NULL, -ENOENT, "tls: ", "live/server-key.pem");
    expect_server_error("nosuchdir", NULL, -ENOENT, "nosuchdir/server-cert.pem",
                        "No such file");
    expect_server_error(NULL, "nosuch.psk", -ENOENT, "nosuch.psk",
                        "No such file");
    /* The server's key must belong to its certificate. */
    copy_file(tpath2("other", "server-key.pem"),
              tpath2("live", "server-key.pem"), 0600);
    expect_server_error("live", NULL, -EINVAL, "live/server-key.pem",
                        "mismatch");
    /* Garbage where a certificate should be. */
    write_text(tpath2("live", "server-cert.pem"), "not a certificate\n", 0644);
    expect_server_error("live", NULL, -EINVAL, "live/server-cert.pem",
                        "no start line");
}

static void expect_bad_psk(const char *text, const char *want)
{
    write_text(tpath("bad.psk"), text, 0600);
    expect_server_error(NULL, "bad.psk", -EINVAL, "bad.psk", want);
    /* Key material never shows in a message. */
    assert_null(strstr(cv_last_error(), "00112233"));
}

static void test_bad_psk_files(void **state)
{
    (void)state;
    expect_bad_psk("alice:00112233445566778899aabbccddeeff0\n",
                   "line 1: odd number of hex digits");
    expect_bad_psk("alice:00112233445566778899aabbccddeeff\nbob\n",
                   "line 2: no ':'");
    expect_bad_psk("", "empty");
    expect_bad_psk("\n\n", "no \"identity:hexkey\" lines");
    expect_bad_psk(":00112233445566778899aabbccddeeff\n", "empty identity");
    expect_bad_psk("alice:\n", "line 1: empty key");
    expect_bad_psk("alice:00112233445566778899aabbccddeefg\n",
                   "not a hex digit");
    expect_bad_psk("alice:0011223344\n", "key is 5 bytes");
    expect_bad_psk("alice:00112233445566778899aabbccddeeff\n"
                   "alice:00112233445566778899aabbccddeeff\n",
                   "line 2: identity \"alice\" appears twice");
}

/* psktool's output, a CRLF line and blank lines are all fine. */
static void test_psk_file_forms(void **state)
{
    char text[256];

    (void)state;
    snprintf(text, sizeof text, "\nalice:%s\r\n\nbob:%s", key_a, key_b);
    write_text(tpath("forms.psk"), text, 0600);
    cv_tls_free(server(NULL, "forms.psk", 0));
    if (have("psktool")) {
        unlink(tpath("tool.psk"));
        snprintf(text, sizeof text, "psktool -u alice -p '%s' >/dev/null",
                 tpath("tool.psk"));
        assert_int_equal(system(text), 0);
        cv_tls_free(server(NULL, "tool.psk", 0));
    }
}

static void test_client_psk_identity_missing(void **state)
{
    struct cv_tls_config cfg = { .psk_file = tpath("keys.psk"),
                                 .psk_identity = "mallory" };
    struct cv_tls *t = NULL;

    (void)state;
    assert_int_equal(cv_tls_client_new(&cfg, &t), -ENOENT);
    assert_non_null(strstr(cv_last_error(), "no identity \"mallory\""));
    cfg.psk_file = NULL;
    assert_int_equal(cv_tls_client_new(&cfg, &t), -EINVAL);
}

/* --- cv_tls_init_dir ------------------------------------------------- */

static void test_init_dir(void **state)
{
    const char *hosts[] = { "nbd.example.com", "10.0.0.7", NULL };
    const char *bad[] = { "a,DNS:evil", NULL };
    struct stat st;

    (void)state;
    assert_int_equal(cv_tls_init_dir(tpath("named"), hosts, "node-1"), 0);
    assert_int_equal(stat(tpath2("named", "server-key.pem"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(tpath2("named", "ca-key.pem"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(cv_tls_init_dir(tpath("named"), NULL, NULL), -EEXIST);
    assert_non_null(strstr(cv_last_error(), "named/ca-cert.pem already exists"));
    assert_int_equal(cv_tls_init_dir(tpath("bad"), bad, NULL), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "not a DNS name"));
    assert_int_equal(cv_tls_init_dir(tpath("bad"), NULL, ""), -EINVAL);
}

/* --- interop with GnuTLS and OpenSSL command-line clients ------------- */

struct tcp_server {
    struct cv_tls *tls;
    int lfd;
    struct side s;
};

static void *tcp_server_main(void *arg)
{
    struct tcp_server *t = arg;
    struct pollfd p = { .fd = t->lfd, .events = POLLIN };
    int fd;

    if (poll(&p, 1, 20000) != 1 || (fd = accept(t->lfd, NULL, NULL)) < 0)
        return NULL;
    t->s.ssl = cv_tls_ssl_new(t->tls, fd);
    if (t->s.ssl) {
        server_main(&t->s);
        /* close_notify both ways: closing with the client's bytes unread
         * would reset the connection, which clients report as an error. */
        if (t->s.ok && SSL_shutdown(t->s.ssl) == 0)
            SSL_shutdown(t->s.ssl);
        SSL_free(t->s.ssl);
    }
    close(fd);
    return NULL;
}

static int listen_local(int *port)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Runs argv (with "PORT" replaced by port) against srv; returns the
 * client's exit status, and the server side in *s.  Output goes to
 * peer.log in the test directory. */
static int run_peer(struct cv_tls *srv, const char **argv, struct side *s)
{
    struct tcp_server t = { .tls = srv };
    static char subst[32][64];
    char *args[32];
    int port, status = -1, i;
    pthread_t th;
    pid_t pid;

    t.lfd = listen_local(&port);
    for (i = 0; argv[i] && i < 31; i++) {
        const char *at = strstr(argv[i], "PORT");

        args[i] = (char *)argv[i];
        if (!at)
            continue;
        snprintf(subst[i], sizeof subst[i], "%.*s%d%s", (int)(at - argv[i]),
                 argv[i], port, at + 4);
        args[i] = subst[i];
    }
    args[i] = NULL;
    assert_int_equal(pthread_create(&th, NULL, tcp_server_main, &t), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int out = open(tpath("peer.log"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        execvp(args[0], args);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    shutdown(t.lfd, SHUT_RDWR);
    pthread_join(th, NULL);
    close(t.lfd);
    if (getenv("CV_TLS_TEST_LOG")) {        /* to debug a peer */
        snprintf(subst[31], sizeof subst[31], "cat '%s' >&2", tpath("peer.log"));
        if (system(subst[31]) != 0)
            fprintf(stderr, "no peer.log\n");
    }
    *s = t.s;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define GNUTLS_PSK "NORMAL:-VERS-ALL:+VERS-TLS1.3:+PSK:+DHE-PSK:+ECDHE-PSK"
/* Only the forward-secret mode (psk_dhe_ke), as a careful client asks. */
#define GNUTLS_ECDHE_PSK "NORMAL:-VERS-ALL:+VERS-TLS1.3:-KX-ALL:+ECDHE-PSK"

static int gnutls_psk(struct cv_tls *srv, const char *priority,
                      const char *user, const char *key, struct side *s)
{
    char useropt[64], keyopt[128];
    const char *argv[] = { "gnutls-cli", useropt, keyopt, "--priority",
                           priority, "-p", "PORT", "localhost", NULL };

    snprintf(useropt, sizeof useropt, "--pskusername=%s", user);
    snprintf(keyopt, sizeof keyopt, "--pskkey=%s", key);
    return run_peer(srv, argv, s);
}

static void test_interop_gnutls_psk(void **state)
{
    struct cv_tls *srv;
    struct side s;

    (void)state;
    if (!have("gnutls-cli"))
        skip();
    srv = server("pki", "keys.psk", 1);
    assert_int_equal(gnutls_psk(srv, GNUTLS_PSK, "alice", key_a, &s), 0);
    assert_true(s.ok);
    assert_string_equal(s.peer, "psk:alice");
    assert_int_equal(gnutls_psk(srv, GNUTLS_ECDHE_PSK, "bob", key_b, &s), 0);
    assert_string_equal(s.peer, "psk:bob");
    assert_int_not_equal(gnutls_psk(srv, GNUTLS_PSK, "alice", key_c, &s), 0);
    assert_false(s.ok);
    assert_int_not_equal(gnutls_psk(srv, GNUTLS_PSK, "carol", key_a, &s), 0);
    assert_false(s.ok && strncmp(s.peer, "psk:", 4) == 0);
    cv_tls_free(srv);
}

static void test_interop_gnutls_x509(void **state)
{
    const char *argv[] = { "gnutls-cli", "--x509cafile", NULL,
                           "--x509certfile", NULL, "--x509keyfile", NULL,
                           "-p", "PORT", "localhost", NULL };
    struct cv_tls *srv;
    struct side s;

    (void)state;
    if (!have("gnutls-cli"))
        skip();
    argv[2] = tpath2("pki", "ca-cert.pem");
    argv[4] = tpath2("pki", "client-cert.pem");
    argv[6] = tpath2("pki", "client-key.pem");
    srv = server("pki", "keys.psk", 1);
    assert_int_equal(run_peer(srv, argv, &s), 0);
    assert_true(s.ok);
    assert_string_equal(s.peer, "CN=cryptvol-client");
    cv_tls_free(srv);
}

static void test_interop_openssl_psk(void **state)
{
    const char *argv[] = { "openssl", "s_client", "-tls1_3", "-psk_identity",
                           "bob", "-psk", key_b, "-connect", "127.0.0.1:PORT",
                           NULL };
    struct cv_tls *srv;
    struct side s;

    (void)state;
    if (!have("openssl"))
        skip();
    srv = server(NULL, "keys.psk", 0);
    assert_int_equal(run_peer(srv, argv, &s), 0);
    assert_true(s.ok);
    assert_string_equal(s.peer, "psk:bob");
    cv_tls_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x509_ok),
        cmocka_unit_test(test_x509_verify_peer_ok),
        cmocka_unit_test(test_x509_peer_host),
        cmocka_unit_test(test_x509_client_from_other_ca_refused),
        cmocka_unit_test(test_x509_client_without_cert_refused),
        cmocka_unit_test(test_x509_server_from_other_ca_refused),
        cmocka_unit_test(test_psk_ok),
        cmocka_unit_test(test_psk_wrong_key_refused),
        cmocka_unit_test(test_psk_unknown_identity_refused),
        cmocka_unit_test(test_psk_and_x509),
        cmocka_unit_test(test_reload_new_certs),
        cmocka_unit_test(test_reload_races_ssl_new),
        cmocka_unit_test(test_permissive_key_refused),
        cmocka_unit_test(test_permissive_psk_refused),
        cmocka_unit_test(test_missing_files),
        cmocka_unit_test(test_bad_psk_files),
        cmocka_unit_test(test_psk_file_forms),
        cmocka_unit_test(test_client_psk_identity_missing),
        cmocka_unit_test(test_init_dir),
        cmocka_unit_test(test_interop_gnutls_psk),
        cmocka_unit_test(test_interop_gnutls_x509),
        cmocka_unit_test(test_interop_openssl_psk),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
