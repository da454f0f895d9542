/* Volume classes (daemon/volumes/classes.c): checking a class, expanding secret
 * templates, parsing ciphers.  Pure functions: no data directory. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "volumes/classes.h"
#include "core/error.h"
#include "meta/meta.h"

static struct cvd_class_rec rec(const char *name)
{
    struct cvd_class_rec c = { .aes_bits = 256, .replicas = 1 };

    snprintf(c.name, sizeof c.name, "%s", name);
    snprintf(c.type, sizeof c.type, "luks2");
    return c;
}

static void expect_msg(const char *want)
{
    if (!strstr(cv_last_error(), want))
        fail_msg("error \"%s\" lacks \"%s\"", cv_last_error(), want);
}

static void expand_placeholders(void **state)
{
    char out[CVD_NAME_MAX + 1];

    (void)state;
    assert_int_equal(cvd_class_expand("${volume.name}", "gold", "db1", out), 0);
    assert_string_equal(out, "db1");
    assert_int_equal(cvd_class_expand("${class.name}-${volume.name}-key",
                                      "gold", "db1", out), 0);
    assert_string_equal(out, "gold-db1-key");
    assert_int_equal(cvd_class_expand("fixed", "gold", "db1", out), 0);
    assert_string_equal(out, "fixed");
    /* Repeats are fine; a '$' that starts no placeholder is not. */
    assert_int_equal(cvd_class_expand("${volume.name}.${volume.name}", "c",
                                      "v", out), 0);
    assert_string_equal(out, "v.v");
}

static void expand_refusals(void **state)
{
    char out[CVD_NAME_MAX + 1], vol[CVD_NAME_MAX + 1];

    (void)state;
    assert_int_equal(cvd_class_expand("${pool}", "gold", "db1", out), -EINVAL);
    expect_msg("unknown placeholder \"${pool}\" (use ${volume.name} or "
               "${class.name})");
    assert_int_equal(cvd_class_expand("${Volume.Name}", "g", "v", out), -EINVAL);
    assert_int_equal(cvd_class_expand("a-${volume.name", "g", "v", out), -EINVAL);
    expect_msg("without a closing");
    assert_int_equal(cvd_class_expand("a/${volume.name}", "g", "v", out), -EINVAL);
    expect_msg("character '/' (position 2) cannot be in a secret name");
    assert_int_equal(cvd_class_expand("$x", "g", "v", out), -EINVAL);
    assert_int_equal(cvd_class_expand("a\nb", "g", "v", out), -EINVAL);
    expect_msg("character '?'");
    /* Valid parts, invalid result: too long, or a bad first character. */
    memset(vol, 'v', CVD_NAME_MAX);
    vol[CVD_NAME_MAX] = '\0';
    assert_int_equal(cvd_class_expand("k-${volume.name}", "g", vol, out),
                     -EINVAL);
    expect_msg("which is not a valid secret name");
    assert_int_equal(cvd_class_expand("-${volume.name}", "g", "v", out),
                     -EINVAL);
    expect_msg("makes \"-v\"");
    assert_int_equal(cvd_class_expand("", "g", "v", out), -EINVAL);
}

static void check_class(void **state)
{
    struct cvd_class_rec c;

    (void)state;
    c = rec("gold");
    assert_int_equal(cvd_class_check(&c), 0);
    assert_false(c.encrypted);          /* no secret, not asked for */
    c = rec("gold");
    snprintf(c.secret, sizeof c.secret, "db-key");
    assert_int_equal(cvd_class_check(&c), 0);
    assert_true(c.encrypted);           /* a secret implies it */
    c = rec("per");
    snprintf(c.secret_template, sizeof c.secret_template, "${volume.name}");
    assert_int_equal(cvd_class_check(&c), 0);
    assert_true(c.encrypted);
    c = rec("gen");
    c.encrypted = 1;
    assert_int_equal(cvd_class_check(&c), 0);
    assert_true(c.encrypted);
}

static void check_refusals(void **state)
{
    struct cvd_class_rec c;

    (void)state;
    c = rec("a/b");
    assert_int_equal(cvd_class_check(&c), -EINVAL);
    expect_msg("class \"a/b\": not a valid name");
    c = rec("g");
    snprintf(c.type, sizeof c.type, "luks3");
    assert_int_equal(cvd_class_check(&c), -EINVAL);
    expect_msg("class g: type \"luks3\"");
    c = rec("g");
    c.aes_bits = 192;
    assert_int_equal(cvd_class_check(&c), -EINVAL);
    c = rec("g");
    c.replicas = 0;
    assert_int_equal(cvd_class_check(&c), -EINVAL);
    expect_msg("replicas must be at least 1");
    c = rec("g");
    snprintf(c.secret, sizeof c.secret, "s");
    snprintf(c.secret_template, sizeof c.secret_template, "${volume.name}");
    assert_int_equal(cvd_class_check(&c), -EINVAL);
    expect_msg("not both");
    c = rec("g");
    snprintf(c.secret, sizeof c.secret, "-s");
    assert_int_equal(cvd_class_check(&c), -EINVAL);
    expect_msg("class g: secret \"-s\": not a valid name");
    c = rec("g");
    snprintf(c.secret_template, sizeof c.secret_template, "${volume}");
    assert_int_equal(cvd_class_check(&c), -EINVAL);
    expect_msg("class g: secret template: unknown placeholder \"${volume}\"");
}

static void ciphers(void **state)
{
    unsigned bits = 0;

    (void)state;
    assert_int_equal(cvd_parse_cipher("c", "aes-xts-plain64", 0, &bits), 0);
    assert_int_equal(bits, 256);
    assert_int_equal(cvd_parse_cipher("c", "aes-xts-plain64", 512, &bits), 0);
    assert_int_equal(bits, 256);
    assert_int_equal(cvd_parse_cipher("c", "aes-xts-plain64", 256, &bits), 0);
    assert_int_equal(bits, 128);
    assert_int_equal(cvd_parse_cipher("c", "aes-256", 0, &bits), 0);
    assert_int_equal(bits, 256);
    assert_int_equal(cvd_parse_cipher("c", "aes-128", 0, &bits), 0);
    assert_int_equal(bits, 128);
    assert_int_equal(cvd_parse_cipher("class g", "aes-xts-plain64", 384, &bits),
                     -EINVAL);
    expect_msg("class g: key size 384");
    assert_int_equal(cvd_parse_cipher("c", "aes-256", 512, &bits), -EINVAL);
    assert_int_equal(cvd_parse_cipher("c", "serpent-xts-plain64", 0, &bits),
                     -EINVAL);
    expect_msg("cipher \"serpent-xts-plain64\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(expand_placeholders),
        cmocka_unit_test(expand_refusals),
        cmocka_unit_test(check_class),
        cmocka_unit_test(check_refusals),
        cmocka_unit_test(ciphers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
