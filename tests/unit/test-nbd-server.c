/* The NBD server in-process, with a small client over a unix socket: the
 * handshake, writes and reads with structured replies, pipelined requests
 * answered out of order, errors with messages, many connections, and a
 * stop that ends connections idle in the handshake and in transmission.
 * (tests/nbd-malformed.sh and nbd-clients.sh do the same with real
 * clients against cryptvold.) */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/chain.h"

#include "daemon.h"
#include "core/error.h"
#include "export/export.h"
#include "log.h"
#include "meta/meta.h"
#include "nbd/nbd-proto.h"
#include "nbd/nbd-server.h"

#define MiB (1024u * 1024)
#define SIZE (8 * MiB)

struct world {
    char dir[64];
    char img[128];
    char sock[128];
    struct cvd d;
    struct cvd_nbd *nbd;
};

static int resolve(void *opaque, const char *name, int serving,
                   struct cvd_volume_spec *s)
{
    struct world *w = opaque;

    (void)serving;
    if (strcmp(name, "plain"))
        return cv_error(-ENOENT, "volume %s: no such volume", name);
    s->path = strdup(w->img);
    s->plaintext = 1;
    return 0;
}

static int unlock(void *opaque, const char *name, struct cv_chain *c,
                  struct cvd_volume_keys *out)
{
    (void)opaque;
    (void)c;
    (void)out;
    return cv_error(-EINVAL, "volume %s: plaintext: nothing to unlock", name);
}

static int list(void *opaque, int (*cb)(void *, const char *), void *arg)
{
    (void)opaque;
    return cb(arg, "plain");
}

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof *w);
    FILE *f;

    cvd_log_init(LOG_ERR);
    strcpy(w->dir, "/tmp/test-nbd-server.XXXXXX");
    assert_non_null(mkdtemp(w->dir));
    snprintf(w->img, sizeof w->img, "%s/plain.img", w->dir);
    snprintf(w->sock, sizeof w->sock, "%s/nbd.sock", w->dir);
    {
        char image[160];

        snprintf(image, sizeof image, "%s.img", w->img);
        f = fopen(image, "w");
        assert_non_null(f);
        assert_int_equal(ftruncate(fileno(f), SIZE), 0);
        fclose(f);
        /* A plaintext volume's chain of one layer. */
        snprintf(w->img, sizeof w->img, "%s/plain", w->dir);
        assert_int_equal(cv_chain_adopt_image(image, w->img, 0), 0);
    }
    assert_int_equal(cvd_registry_new(resolve, unlock, list, w, NULL,
                                      &w->d.reg), 0);
    /* The server asks the store who may open a volume and what INFO says
     * of it: the one volume is recorded there too. */
    assert_int_equal(cvd_meta_open_sqlite(w->dir, &w->d.meta), 0);
    {
        struct cvd_volume_rec v = { .name = "plain", .size = SIZE,
                                    .type = "plaintext", .cipher = "none",
                                    .sector_size = 512, .state = "ready" };
        snprintf(v.path, sizeof v.path, "%s", w->img);
        assert_int_equal(w->d.meta->ops->volume_add(w->d.meta, &v, NULL), 0);
    }
    pthread_mutex_init(&w->d.header_lock, NULL);
    cvd_bounds_defaults(&w->d.cfg.bounds);
    w->d.cfg.nbd_unix = w->sock;
    w->d.cfg.tls_mode = CVD_TLS_OFF;
    w->d.cfg.nbd_threads = 4;
    assert_int_equal(cvd_nbd_start(&w->d, &w->nbd), 0);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    char cmd[128];

    cvd_nbd_stop(w->nbd);
    cvd_registry_free(w->d.reg);
    cvd_meta_close(w->d.meta);
    pthread_mutex_destroy(&w->d.header_lock);
    snprintf(cmd, sizeof cmd, "rm -rf %s", w->dir);
    assert_int_equal(system(cmd), 0);
    free(w);
    return 0;
}

/* --- A small client ----------------------------------------------------- */

static void xread(int fd, void *buf, size_t len)
{
    if (len == 0)
        return;
    assert_int_equal(recv(fd, buf, len, MSG_WAITALL), (ssize_t)len);
}

static void xwrite(int fd, const void *buf, size_t len)
{
    assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void send_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t h[NBD_OPT_HDR_LEN];

    nbd_put64(h, NBD_OPTS_MAGIC);
    nbd_put32(h + 8, opt);
    nbd_put32(h + 12, len);
    xwrite(fd, h, sizeof h);
    if (len)
        xwrite(fd, data, len);
}

/* One option reply: its type, payload into buf (cap bytes). */
static uint32_t opt_reply(int fd, uint8_t *buf, size_t cap, uint32_t *len)
{
    uint8_t h[NBD_OPT_REPLY_HDR_LEN];

    xread(fd, h, sizeof h);
    assert_true(nbd_get64(h) == NBD_REP_MAGIC);
    *len = nbd_get32(h + 16);
    assert_true(*len <= cap);
    xread(fd, buf, *len);
    return nbd_get32(h + 12);
}

static int connect_to(struct world *w)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    uint8_t greet[NBD_HANDSHAKE_LEN], flags[4];
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    strcpy(sa.sun_path, w->sock);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    xread(fd, greet, sizeof greet);
    assert_true(nbd_get64(greet) == NBD_MAGIC);
    nbd_put32(flags, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    xwrite(fd, flags, sizeof flags);
    return fd;
}

/* Structured replies, then GO; returns the transmission flags. */
static uint16_t go(int fd, const char *name)
{
    uint8_t data[64], buf[256];
    uint32_t len, type, nlen = (uint32_t)strlen(name);
    uint16_t tflags = 0;

    send_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    assert_int_equal(opt_reply(fd, buf, sizeof buf, &len), NBD_REP_ACK);
    nbd_put32(data, nlen);
    memcpy(data + 4, name, nlen);
    nbd_put16(data + 4 + nlen, 0);
    send_opt(fd, NBD_OPT_GO, data, 6 + nlen);
    while ((type = opt_reply(fd, buf, sizeof buf, &len)) == NBD_REP_INFO)
        if (nbd_get16(buf) == NBD_INFO_EXPORT) {
            assert_int_equal(nbd_get64(buf + 2), SIZE);
            tflags = nbd_get16(buf + 10);
        }
    assert_int_equal(type, NBD_REP_ACK);
    return tflags;
}

static void request(int fd, uint16_t type, uint16_t flags, uint64_t handle,
                    uint64_t off, uint32_t len, const void *data)
{
    uint8_t h[NBD_REQUEST_LEN];

    nbd_put32(h, NBD_REQUEST_MAGIC);
    nbd_put16(h + 4, flags);
    nbd_put16(h + 6, type);
    nbd_put64(h + 8, handle);
    nbd_put64(h + 16, off);
    nbd_put32(h + 24, len);
    xwrite(fd, h, sizeof h);
    if (type == NBD_CMD_WRITE)
        xwrite(fd, data, len);
}

/* One reply: returns its error; the handle in *handle; data (after the
 * offset of an OFFSET_DATA chunk) into buf; an error message into msg. */
static uint32_t reply(int fd, uint64_t *handle, uint8_t *buf, size_t cap,
                      char *msg, size_t mcap)
{
    uint8_t h[NBD_CHUNK_HDR_LEN];
    uint32_t len, err = 0;

    xread(fd, h, 4);
    if (nbd_get32(h) == NBD_SIMPLE_REPLY_MAGIC) {
        xread(fd, h + 4, 12);
        *handle = nbd_get64(h + 8);
        return nbd_get32(h + 4);
    }
    assert_true(nbd_get32(h) == NBD_STRUCTURED_REPLY_MAGIC);
    xread(fd, h + 4, NBD_CHUNK_HDR_LEN - 4);
    assert_true(nbd_get16(h + 4) & NBD_REPLY_FLAG_DONE);
    *handle = nbd_get64(h + 8);
    len = nbd_get32(h + 16);
    uint8_t *p = malloc(len);
    xread(fd, p, len);
    if (nbd_get16(h + 6) == NBD_REPLY_TYPE_ERROR) {
        err = nbd_get32(p);
        snprintf(msg, mcap, "%.*s", (int)nbd_get16(p + 4), (char *)p + 6);
    } else if (nbd_get16(h + 6) == NBD_REPLY_TYPE_OFFSET_DATA) {
        assert_true(len - 8 <= cap);
        memcpy(buf, p + 8, len - 8);
    }
    free(p);
    return err;
}

/* --- Tests -------------------------------------------------------------- */

static void test_list_and_unknown(void **state)
{
    struct world *w = *state;
    int fd = connect_to(w);
    uint8_t buf[256], data[16];
    uint32_t len;

    send_opt(fd, NBD_OPT_LIST, NULL, 0);
    assert_int_equal(opt_reply(fd, buf, sizeof buf, &len), NBD_REP_SERVER);
    assert_int_equal(nbd_get32(buf), 5);
    assert_memory_equal(buf + 4, "plain", 5);
    assert_int_equal(opt_reply(fd, buf, sizeof buf, &len), NBD_REP_ACK);
    nbd_put32(data, 4);
    memcpy(data + 4, "nope", 4);
    nbd_put16(data + 8, 0);
    send_opt(fd, NBD_OPT_GO, data, 10);
    /* The same answer a volume the client may not open would get. */
    assert_int_equal(opt_reply(fd, buf, sizeof buf - 1, &len),
                     NBD_REP_ERR_POLICY);
    buf[len] = '\0';
    assert_non_null(strstr((char *)buf, "volume nope: no such volume, or "
                           "this client may not open it"));
    assert_int_equal(go(fd, "plain") & NBD_FLAG_CAN_MULTI_CONN,
                     NBD_FLAG_CAN_MULTI_CONN);
    close(fd);
}

static void test_write_read(void **state)
{
    struct world *w = *state;
    int fd = connect_to(w);
    static uint8_t data[3 * MiB + 7], back[3 * MiB + 7];
    char msg[256];
    uint64_t h;

    go(fd, "plain");
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    request(fd, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 1, 12345, sizeof data, data);
    assert_int_equal(reply(fd, &h, NULL, 0, msg, sizeof msg), 0);
    assert_int_equal(h, 1);
    request(fd, NBD_CMD_READ, 0, 2, 12345, sizeof back, NULL);
    assert_int_equal(reply(fd, &h, back, sizeof back, msg, sizeof msg), 0);
    assert_int_equal(h, 2);
    assert_memory_equal(back, data, sizeof data);
    request(fd, NBD_CMD_READ, 0, 3, SIZE - 10, 20, NULL);
    assert_int_equal(reply(fd, &h, back, sizeof back, msg, sizeof msg),
                     NBD_EINVAL);
    assert_non_null(strstr(msg, "past the end"));
    request(fd, NBD_CMD_FLUSH, 0, 4, 0, 0, NULL);
    assert_int_equal(reply(fd, &h, NULL, 0, msg, sizeof msg), 0);
    request(fd, NBD_CMD_DISC, 0, 5, 0, 0, NULL);
    assert_int_equal(recv(fd, msg, 1, 0), 0);
    close(fd);
}

static void test_pipelined(void **state)
{
    struct world *w = *state;
    int fd = connect_to(w);
    static uint8_t data[65536], back[65536];
    uint64_t seen = 0, h;
    char msg[256];

    go(fd, "plain");
    memset(data, 0x5a, sizeof data);
    /* 32 writes then 32 reads of other ranges, all in flight at once */
    for (unsigned i = 0; i < 32; i++)
        request(fd, NBD_CMD_WRITE, 0, i, (uint64_t)i * sizeof data,
                sizeof data, data);
    for (unsigned i = 32; i < 64; i++)
        request(fd, NBD_CMD_READ, 0, i, 4 * MiB + (uint64_t)i * 4096, 4096,
                NULL);
    for (unsigned i = 0; i < 64; i++) {
        assert_int_equal(reply(fd, &h, back, sizeof back, msg, sizeof msg), 0);
        assert_true(h < 64 && !(seen & (UINT64_C(1) << h)));
        seen |= UINT64_C(1) << h;
    }
    request(fd, NBD_CMD_READ, 0, 99, 0, sizeof back, NULL);
    assert_int_equal(reply(fd, &h, back, sizeof back, msg, sizeof msg), 0);
    assert_memory_equal(back, data, sizeof data);
    close(fd);
}

static void *one_client(void *arg)
{
    struct world *w = arg;
    int fd = connect_to(w);
    uint8_t back[4096];
    char msg[64];
    uint64_t h;

    go(fd, "plain");
    for (unsigned i = 0; i < 20; i++) {
        request(fd, NBD_CMD_READ, 0, i, i * 4096u, sizeof back, NULL);
        assert_int_equal(reply(fd, &h, back, sizeof back, msg, sizeof msg), 0);
    }
    close(fd);
    return NULL;
}

static void test_many_connections(void **state)
{
    pthread_t t[64];

    for (int i = 0; i < 64; i++)
        assert_int_equal(pthread_create(&t[i], NULL, one_client, *state), 0);
    for (int i = 0; i < 64; i++)
        pthread_join(t[i], NULL);
}

/* Stop with one client in the handshake and one with a request in flight:
 * the request is answered, both connections end, stop returns.  (The
 * client reads only after stop returned, so the reply must fit in the
 * socket's buffer; a client that never reads is cut off after 5 s.) */
static void test_stop(void **state)
{
    struct world *w = *state;
    int idle = connect_to(w), busy = connect_to(w);
    static uint8_t back[65536];     /* fits the socket buffer */
    char msg[64];
    uint64_t h;

    go(busy, "plain");
    request(busy, NBD_CMD_READ, 0, 7, 0, sizeof back, NULL);
    cvd_nbd_stop(w->nbd);
    w->nbd = NULL;
    assert_int_equal(reply(busy, &h, back, sizeof back, msg, sizeof msg), 0);
    assert_int_equal(h, 7);
    assert_int_equal(recv(busy, msg, 1, 0), 0);
    assert_int_equal(recv(idle, msg, 1, 0), 0);
    assert_int_equal(access(w->sock, F_OK), -1);
    assert_int_equal(cvd_registry_in_use(w->d.reg, "plain", 0), 0);
    close(idle);
    close(busy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_list_and_unknown, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_write_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_connections, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
