/* cv_secret_read_file: passphrase files read byte for byte, refused when
 * group or others may access them. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/secret-file.h"

struct fixture {
    char dir[PATH_MAX];
    char path[PATH_MAX + 8];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/cv-secret-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/pass", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Writes len bytes to f->path with the given mode (umask does not apply:
 * the mode is set explicitly afterwards). */
static void write_file(struct fixture *f, const void *data, size_t len,
                       mode_t mode)
{
    int fd;

    unlink(f->path);
    fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

static void assert_zeroed(const struct cv_secret *s)
{
    assert_null(s->data);
    assert_int_equal(s->len, 0);
    assert_int_equal(s->alloc, 0);
}

static void assert_message_names(const char *path, const char *what)
{
    const char *msg = cv_last_error();

    if (!strstr(msg, path))
        fail_msg("message \"%s\" does not name %s", msg, path);
    if (!strstr(msg, what))
        fail_msg("message \"%s\" does not name the role \"%s\"", msg, what);
    if (strchr(msg, '\n'))
        fail_msg("message \"%s\" is more than one line", msg);
}

static void test_exact_bytes_with_newline(void **state)
{
    struct fixture *f = *state;
    static const char data[] = "correct horse battery staple\n";
    struct cv_secret s;

    write_file(f, data, sizeof data - 1, 0600);
    assert_int_equal(cv_secret_read_file(f->path, "passphrase file", &s), 0);
    assert_int_equal(s.len, sizeof data - 1);
    assert_memory_equal(s.data, data, sizeof data - 1);
    assert_int_equal(s.data[s.len - 1], '\n');
    cv_secret_free(&s);
    assert_zeroed(&s);
}

static void test_exact_bytes_binary(void **state)
{
    struct fixture *f = *state;
    /* NULs, CR LF, trailing spaces and newlines: all kept. */
    static const unsigned char data[] = {
        'a', 0, 'b', '\r', '\n', 0xff, 0x80, ' ', ' ', '\n', '\n' };
    struct cv_secret s;

    write_file(f, data, sizeof data, 0400);
    assert_int_equal(cv_secret_read_file(f->path, "key file", &s), 0);
    assert_int_equal(s.len, sizeof data);
    assert_memory_equal(s.data, data, sizeof data);
    cv_secret_free(&s);
}

static void test_single_byte_and_max(void **state)
{
    struct fixture *f = *state;
    struct cv_secret s;
    char *big = malloc(CV_SECRET_MAX + 1);
    size_t i;

    assert_non_null(big);
    for (i = 0; i < CV_SECRET_MAX + 1; i++)
        big[i] = (char)(i * 7 + 3);
    write_file(f, "\n", 1, 0600);
    assert_int_equal(cv_secret_read_file(f->path, "passphrase file", &s), 0);
    assert_int_equal(s.len, 1);
    assert_int_equal(s.data[0], '\n');
    cv_secret_free(&s);

    write_file(f, big, CV_SECRET_MAX, 0600);
    assert_int_equal(cv_secret_read_file(f->path, "passphrase file", &s), 0);
    assert_int_equal(s.len, CV_SECRET_MAX);
    assert_memory_equal(s.data, big, CV_SECRET_MAX);
    cv_secret_free(&s);

    write_file(f, big, CV_SECRET_MAX + 1, 0600);
    cv_clear_error();
    assert_int_equal(cv_secret_read_file(f->path, "passphrase file", &s),
                     -EFBIG);
    assert_zeroed(&s);
    assert_message_names(f->path, "passphrase file");
    free(big);
}

static void expect_mode_refused(struct fixture *f, mode_t mode)
{
    struct cv_secret s;
    char octal[8];

    write_file(f, "secret", 6, mode);
    cv_clear_error();
    assert_int_equal(cv_secret_read_file(f->path, "passphrase file", &s),
                     -EPERM);
    assert_zeroed(&s);
    assert_message_names(f->path, "passphrase file");
    snprintf(octal, sizeof octal, "%04o", (unsigned)mode);
    if (!strstr(cv_last_error(), octal))
        fail_msg("message \"%s\" does not give the mode %s", cv_last_error(),
                 octal);
}

static void test_group_readable_refused(void **state)
{
    expect_mode_refused(*state, 0640);
}

static void test_other_readable_refused(void **state)
{
    expect_mode_refused(*state, 0604);
}

static void test_any_group_or_other_bit_refused(void **state)
{
    struct fixture *f = *state;

    expect_mode_refused(f, 0644);
    expect_mode_refused(f, 0620);       /* writable by group */
    expect_mode_refused(f, 0610);       /* executable by group */
    expect_mode_refused(f, 0602);
    expect_mode_refused(f, 0601);
    expect_mode_refused(f, 0666);
}

static void test_missing_file(void **state)
{
    struct fixture *f = *state;
    struct cv_secret s;

    unlink(f->path);
    cv_clear_error();
    assert_int_equal(cv_secret_read_file(f->path, "passphrase file", &s),
                     -ENOENT);
    assert_zeroed(&s);
    assert_message_names(f->path, "passphrase file");
    assert_non_null(strstr(cv_last_error(), strerror(ENOENT)));
}

static void test_empty_file(void **state)
{
    struct fixture *f = *state;
    struct cv_secret s;

    write_file(f, "", 0, 0600);
    cv_clear_error();
    assert_int_equal(cv_secret_read_file(f->path, "passphrase file", &s),
                     -EINVAL);
    assert_zeroed(&s);
    assert_message_names(f->path, "passphrase file");
    assert_non_null(strstr(cv_last_error(), "empty"));
}

static void test_directory(void **state)
{
    struct fixture *f = *state;
    struct cv_secret s;

    /* The directory itself is 0700, so only its type can refuse it. */
    cv_clear_error();
    assert_int_equal(cv_secret_read_file(f->dir, "passphrase file", &s),
                     -EINVAL);
    assert_zeroed(&s);
    assert_message_names(f->dir, "passphrase file");
    assert_non_null(strstr(cv_last_error(), "not a regular file"));
}

static void test_free_zeroed_struct(void **state)
{
    struct cv_secret s = { 0 };

    (void)state;
    cv_secret_free(&s);
    cv_secret_free(&s);
    assert_zeroed(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exact_bytes_with_newline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exact_bytes_binary, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_single_byte_and_max, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_readable_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_other_readable_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_any_group_or_other_bit_refused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory, setup, teardown),
        cmocka_unit_test(test_free_zeroed_struct),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
