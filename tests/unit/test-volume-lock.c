/* cv_volume's range lock, seen from the store: a write that overlaps the
 * sectors of another write's read-modify-write reaches the store only after
 * that read-modify-write has written, so no write is lost.
 *
 * A gate store around the in-memory one holds the read-modify-write after
 * it has read its sector and before it writes it; meanwhile an aligned
 * write of the same sectors is issued.  It must not reach the store until
 * the gate opens.  (test-rangelock checks the lock itself and test-volume
 * races read-modify-writes against each other, which both hold the lock;
 * neither would see an aligned write that skips it.) */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/error.h"
#include "image/volume.h"
#include "store/backend.h"

#define KiB 1024u
/* How long the read-modify-write stays held: an aligned write that does
 * not wait for it has reached the store long before. */
#define HOLD_MS 1000
/* How long a thread that should get somewhere gets. */
#define ARRIVE_S 10

/* Where the volume's data starts in the store, and its size in sectors. */
#define DATA_OFFSET (64 * KiB)
#define SECTORS 16
/* The sector of the read-modify-write. */
#define S 5

struct gate {
    struct cv_backend base;
    struct cv_backend *inner;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* A pread of this sector is held (the volume reads whole 4 KiB
     * blocks, so a pread that covers it). */
    uint64_t hold_off;
    size_t hold_len;
    int armed;
    int holding;                /* a pread is held, its data read */
    int open;                   /* the held pread may return */
    unsigned writes_while_held; /* pwrites that came while one was held */
    uint64_t first_write_off;
};

static struct gate *to_gate(struct cv_backend *b)
{
    return (struct gate *)b;
}

/* The data is read first, then the caller waits: what it read is what the
 * store held before anything that comes while it waits. */
static int gate_pread(struct cv_backend *b, void *buf, size_t len,
                      uint64_t off)
{
    struct gate *g = to_gate(b);
    int r = cv_backend_pread(g->inner, buf, len, off);

    pthread_mutex_lock(&g->lock);
    if (g->armed && off <= g->hold_off &&
        off + len >= g->hold_off + g->hold_len) {
        g->armed = 0;
        g->holding = 1;
        pthread_cond_broadcast(&g->cond);
        while (!g->open)
            pthread_cond_wait(&g->cond, &g->lock);
        g->holding = 0;
    }
    pthread_mutex_unlock(&g->lock);
    return r;
}

static int gate_pwrite(struct cv_backend *b, const void *buf, size_t len,
                       uint64_t off, unsigned flags)
{
    struct gate *g = to_gate(b);

    pthread_mutex_lock(&g->lock);
    if (g->holding && !g->writes_while_held++)
        g->first_write_off = off;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    return cv_backend_pwrite(g->inner, buf, len, off, flags);
}

static int gate_flush(struct cv_backend *b)
{
    return cv_backend_flush(to_gate(b)->inner);
}

static int gate_discard(struct cv_backend *b, uint64_t off, uint64_t len)
{
    return cv_backend_discard(to_gate(b)->inner, off, len);
}

static int gate_get_size(struct cv_backend *b, uint64_t *size)
{
    return cv_backend_size(to_gate(b)->inner, size);
}

static int gate_resize(struct cv_backend *b, uint64_t size)
{
    return cv_backend_resize(to_gate(b)->inner, size);
}

static void gate_close(struct cv_backend *b)
{
    struct gate *g = to_gate(b);

    cv_backend_close(g->inner);
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

static const struct cv_backend_ops gate_ops = {
    .kind = "gate",
    .pread = gate_pread,
    .pwrite = gate_pwrite,
    .flush = gate_flush,
    .discard = gate_discard,
    .get_size = gate_get_size,
    .resize = gate_resize,
    .close = gate_close,
};

static struct gate *gate_new(uint64_t size)
{
    struct gate *g = calloc(1, sizeof *g);

    assert_non_null(g);
    g->base.ops = &gate_ops;
    g->base.name = strdup("gate");
    assert_non_null(g->base.name);
    assert_int_equal(cv_backend_mem_new("mem", size, &g->inner), 0);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    return g;
}

static void deadline(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

struct writer {
    struct cv_volume *v;
    const void *buf;
    size_t len;
    uint64_t off;
    int result;
    char message[256];
    pthread_t thread;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;

    w->result = cv_volume_write(w->v, w->buf, w->len, w->off, 0);
    if (w->result < 0)
        snprintf(w->message, sizeof w->message, "%s", cv_last_error());
    return NULL;
}

static void writer_start(struct writer *w, struct cv_volume *v,
                         const void *buf, size_t len, uint64_t off)
{
    *w = (struct writer){ .v = v, .buf = buf, .len = len, .off = off };
    assert_int_equal(pthread_create(&w->thread, NULL, writer_main, w), 0);
}

static void writer_join(struct writer *w, const char *what)
{
    pthread_join(w->thread, NULL);
    if (w->result < 0)
        fail_msg("%s: %d (%s)", what, w->result, w->message);
}

/* A read-modify-write of 4 bytes inside sector S is held after its read;
 * an aligned write of sectors S-1 to S+1 must wait for it, and the volume
 * must end as one of the two orders would leave it. */
static void aligned_waits_for_rmw(unsigned ss)
{
    struct cv_luks_info info = { .luks_version = 2, .sector_size = ss,
                                 .data_offset = DATA_OFFSET,
                                 .effective_size = SECTORS * ss };
    unsigned char key[64], *old, *aligned, *after;
    static const unsigned char rmw[4] = { 'R', 'M', 'W', '!' };
    struct gate *g = gate_new(DATA_OFFSET + SECTORS * ss);
    struct cv_volume *v = NULL;
    struct writer a, b;
    struct timespec ts;
    unsigned seen;
    size_t i;
    int r;

    memset(key, 0x5a, sizeof key);
    strcpy(info.cipher, "aes-xts-plain64");
    info.key_bits = 512;
    assert_int_equal(cv_volume_open_key(&g->base, &info, key, sizeof key, NULL,
                                        0, &v), 0);
    old = malloc(SECTORS * ss);
    aligned = malloc(3 * ss);
    after = malloc(ss);
    assert_true(old && aligned && after);
    memset(old, 'o', SECTORS * ss);
    memset(aligned, 'A', 3 * ss);
    assert_int_equal(cv_volume_write(v, old, SECTORS * ss, 0, 0), 0);

    pthread_mutex_lock(&g->lock);
    g->hold_off = DATA_OFFSET + (uint64_t)S * ss;
    g->hold_len = ss;
    g->armed = 1;
    pthread_mutex_unlock(&g->lock);
    writer_start(&b, v, rmw, sizeof rmw, (uint64_t)S * ss + 100);

    /* The read-modify-write has read sector S and holds it. */
    deadline(&ts, ARRIVE_S * 1000);
    pthread_mutex_lock(&g->lock);
    for (r = 0; !g->holding && r == 0;)
        r = pthread_cond_timedwait(&g->cond, &g->lock, &ts);
    seen = g->holding;
    pthread_mutex_unlock(&g->lock);
    if (!seen)
        fail_msg("%u-byte sectors: the write of 4 bytes at %u never read "
                 "its sector", ss, S * ss + 100);

    writer_start(&a, v, aligned, 3 * ss, (uint64_t)(S - 1) * ss);
    deadline(&ts, HOLD_MS);
    pthread_mutex_lock(&g->lock);
    for (r = 0; !g->writes_while_held && r == 0;)
        r = pthread_cond_timedwait(&g->cond, &g->lock, &ts);
    seen = g->writes_while_held;
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    writer_join(&b, "read-modify-write");
    writer_join(&a, "aligned write");
    if (seen)
        fail_msg("%u-byte sectors: an aligned write of sectors %u-%u reached "
                 "the store (at byte %llu) while a read-modify-write of "
                 "sector %u was between its read and its write: the range "
                 "lock did not hold it", ss, S - 1, S + 1,
                 (unsigned long long)g->first_write_off, S);

    /* B then A: all 'A'.  A then B: 'A' with B's 4 bytes.  Anything of the
     * old contents means A's write was lost. */
    assert_int_equal(cv_volume_read(v, after, ss, (uint64_t)S * ss), 0);
    for (i = 0; i < ss; i++)
        if (after[i] == 'o')
            fail_msg("%u-byte sectors: sector %u holds its old contents at "
                     "byte %zu after an aligned write over it: the write was "
                     "lost", ss, S, i);
    cv_volume_close(v);
    cv_backend_close(&g->base);
    free(old);
    free(aligned);
    free(after);
}

static void test_aligned_waits_for_rmw_4096(void **state)
{
    (void)state;
    aligned_waits_for_rmw(4096);
}

static void test_aligned_waits_for_rmw_512(void **state)
{
    (void)state;
    aligned_waits_for_rmw(512);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aligned_waits_for_rmw_4096),
        cmocka_unit_test(test_aligned_waits_for_rmw_512),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
