/* cv_secret_read_stream and "-" for cv_secret_read_file: a secret piped in
 * is read to its end into locked memory, growing past the first buffer,
 * byte for byte; empty and too long are refused, saying so. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/secret-file.h"

struct feed {
    int fd;
    const unsigned char *data;
    size_t len;
};

/* Writes the bytes in small pieces, as a pipe delivers them. */
static void *writer(void *arg)
{
    struct feed *f = arg;
    size_t at = 0;

    while (at < f->len) {
        size_t n = f->len - at < 1000 ? f->len - at : 1000;
        ssize_t w = write(f->fd, f->data + at, n);
        if (w <= 0)
            break;
        at += (size_t)w;
    }
    close(f->fd);
    return NULL;
}

/* Reads len bytes of pattern through a pipe. */
static int read_piped(const unsigned char *data, size_t len,
                      struct cv_secret *s)
{
    struct feed f = { .data = data, .len = len };
    pthread_t t;
    int p[2], r;

    assert_int_equal(pipe(p), 0);
    f.fd = p[1];
    assert_int_equal(pthread_create(&t, NULL, writer, &f), 0);
    r = cv_secret_read_stream(p[0], "secret file -", s);
    close(p[0]);        /* a writer left with bytes sees EPIPE and stops */
    pthread_join(t, NULL);
    return r;
}

static unsigned char *pattern(size_t len)
{
    unsigned char *b = malloc(len ? len : 1);
    size_t i;

    assert_non_null(b);
    for (i = 0; i < len; i++)
        b[i] = (unsigned char)(i * 7 + (i >> 8));
    return b;
}

static void expect_bytes(size_t len)
{
    unsigned char *want = pattern(len);
    struct cv_secret s;

    assert_int_equal(read_piped(want, len, &s), 0);
    assert_int_equal(s.len, len);
    assert_memory_equal(s.data, want, len);
    cv_secret_free(&s);
    assert_null(s.data);
    free(want);
}

static void test_sizes(void **state)
{
    (void)state;
    expect_bytes(1);
    expect_bytes(31);
    expect_bytes(4096);             /* exactly the first buffer */
    expect_bytes(4097);             /* one more: it grows */
    expect_bytes(40000);
    expect_bytes(CV_SECRET_MAX);    /* the largest allowed */
}

static void test_newline_kept(void **state)
{
    static const unsigned char v[] = "two words\n";
    struct cv_secret s;

    (void)state;
    assert_int_equal(read_piped(v, sizeof v - 1, &s), 0);
    assert_int_equal(s.len, sizeof v - 1);
    assert_memory_equal(s.data, v, sizeof v - 1);
    cv_secret_free(&s);
}

static void test_empty(void **state)
{
    struct cv_secret s;

    (void)state;
    assert_int_equal(read_piped((const unsigned char *)"", 0, &s), -EINVAL);
    assert_null(s.data);
    assert_string_equal(cv_last_error(), "secret file -: empty");
}

static void test_too_long(void **state)
{
    unsigned char *big = pattern(CV_SECRET_MAX + 1);
    struct cv_secret s;
    char want[64];

    (void)state;
    assert_int_equal(read_piped(big, CV_SECRET_MAX + 1, &s), -EFBIG);
    assert_null(s.data);
    snprintf(want, sizeof want, "secret file -: larger than %d bytes",
             CV_SECRET_MAX);
    assert_string_equal(cv_last_error(), want);
    free(big);
}

/* "-" is standard input, here a pipe. */
static void test_dash_is_stdin(void **state)
{
    static const unsigned char v[] = "from standard input";
    struct cv_secret s;
    int p[2], saved = dup(STDIN_FILENO);

    (void)state;
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], v, sizeof v - 1), (ssize_t)(sizeof v - 1));
    close(p[1]);
    assert_int_equal(dup2(p[0], STDIN_FILENO), STDIN_FILENO);
    close(p[0]);
    assert_int_equal(cv_secret_read_file("-", "secret file", &s), 0);
    dup2(saved, STDIN_FILENO);
    close(saved);
    assert_int_equal(s.len, sizeof v - 1);
    assert_memory_equal(s.data, v, sizeof v - 1);
    cv_secret_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_newline_kept),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_dash_is_stdin),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
