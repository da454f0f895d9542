/* cryptvold's configuration: defaults, file parsing with line numbers in
 * errors, values checked, derived defaults and combinations refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "core/error.h"

static char path[] = "/tmp/test-config.XXXXXX";

static void write_conf(const char *text)
{
    int fd = mkstemp(path);
    FILE *f;

    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
}

static void test_file_and_defaults(void **state)
{
    struct cvd_config c;

    (void)state;
    cvd_config_defaults(&c);
    write_conf("# comment\n  data-dir = /srv/x  # trailing\n\n"
               "tls = on\ntls-psk=/k.psk\ntls-verify-peer = no\n"
               "foreground\npbkdf = pbkdf2\npbkdf-iterations = 1000\n");
    assert_int_equal(cvd_config_load(&c, path), 0);
    unlink(path);
    assert_int_equal(cvd_config_finish(&c), 0);
    assert_string_equal(c.data_dir, "/srv/x");
    assert_string_equal(c.admin_socket, "/srv/x/admin.sock");
    assert_string_equal(c.nbd_listen, "127.0.0.1:10809");
    assert_int_equal(c.tls_mode, CVD_TLS_ON);
    assert_int_equal(c.tls_verify_peer, 0);
    assert_int_equal(c.foreground, 1);
    assert_string_equal(c.pbkdf.type, "pbkdf2");
    assert_int_equal(c.pbkdf.iterations, 1000);
    cvd_config_free(&c);
}

static void test_bad_lines(void **state)
{
    static const char *const bad[] = {
        "colour = blue\n", "tls = maybe\n", "pbkdf = md5\n",
        "pbkdf-iterations = -1\n", "foreground = sometimes\n",
        "log-level = loud\n", "data-dir\n", "crypto-threads = 257\n",
        "crypto-threads = many\n",
    };
    struct cvd_config c;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128];

        cvd_config_defaults(&c);
        snprintf(text, sizeof text, "data-dir = /x\n%s", bad[i]);
        strcpy(path, "/tmp/test-config.XXXXXX");
        write_conf(text);
        assert_int_equal(cvd_config_load(&c, path), -EINVAL);
        assert_non_null(strstr(cv_last_error(), ":2: "));
        unlink(path);
        cvd_config_free(&c);
    }
}

static void test_combinations(void **state)
{
    struct cvd_config c;

    (void)state;
    cvd_config_defaults(&c);
    assert_int_equal(cvd_config_finish(&c), -EINVAL);   /* require, no creds */
    assert_non_null(strstr(cv_last_error(), "--tls-dir or --tls-psk"));
    assert_int_equal(cvd_config_set(&c, "tls", "off"), 0);
    assert_int_equal(cvd_config_set(&c, "nbd-listen", "none"), 0);
    assert_int_equal(cvd_config_finish(&c), -EINVAL);   /* nothing served */
    assert_non_null(strstr(cv_last_error(), "nothing to serve"));
    assert_int_equal(cvd_config_set(&c, "nbd-unix", "/run/x.sock"), 0);
    assert_int_equal(cvd_config_finish(&c), 0);
    assert_null(c.nbd_listen);
    assert_int_equal(cvd_config_set(&c, "admin-listen", "0.0.0.0:1"), 0);
    assert_int_equal(cvd_config_finish(&c), -EINVAL);   /* HTTPS, no admins */
    assert_non_null(strstr(cv_last_error(), "admin-listen needs admin "
                           "identities"));
    /* Verifying NBD clients does not make them admins. */
    assert_int_equal(cvd_config_set(&c, "tls-dir", "/etc/x"), 0);
    assert_int_equal(cvd_config_set(&c, "tls-verify-peer", NULL), 0);
    assert_int_equal(cvd_config_finish(&c), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "admin identities"));
    assert_int_equal(cvd_config_set(&c, "admin-allow", "cn:ops1"), 0);
    assert_int_equal(cvd_config_finish(&c), 0);
    assert_string_equal(c.admin_allow, "cn:ops1");
    assert_int_equal(cvd_config_set(&c, "admin-max-per-peer", "x"), -EINVAL);
    assert_int_equal(cvd_config_set(&c, "admin-max-per-peer", "4"), 0);
    assert_int_equal(c.admin_max_per_peer, 4);
    assert_int_equal(c.crypto_threads, 0);
    assert_int_equal(cvd_config_set(&c, "crypto-threads", "3"), 0);
    assert_int_equal(c.crypto_threads, 3);
    assert_int_equal(cvd_config_set(&c, "crypto-threads", "257"), -EINVAL);
    assert_string_equal(cv_last_error(), "crypto-threads: 257 is more than 256");
    assert_int_equal(c.crypto_threads, 3);
    cvd_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_and_defaults),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_combinations),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
