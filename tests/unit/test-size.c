/* cv_parse_size: sizes as users type them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/size.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define TiB (1024ull * GiB)
#define PiB (1024ull * TiB)

static void expect_size(const char *str, uint64_t want)
{
    uint64_t got = 0xdeadbeef;
    int r = cv_parse_size(str, &got);

    if (r != 0)
        fail_msg("\"%s\": returned %d (%s), expected %llu", str, r,
                 cv_last_error(), (unsigned long long)want);
    if (got != want)
        fail_msg("\"%s\": got %llu, expected %llu", str,
                 (unsigned long long)got, (unsigned long long)want);
}

/* Must fail with code, leave *out alone, and name the input. */
static void expect_reject(const char *str, int code)
{
    uint64_t got = 12345;
    int r;

    cv_clear_error();
    r = cv_parse_size(str, &got);
    if (r != code)
        fail_msg("\"%s\": returned %d (got %llu), expected %d", str, r,
                 (unsigned long long)got, code);
    assert_int_equal(got, 12345);
    assert_true(cv_last_error()[0] != '\0');
    if (str[0] && !strstr(cv_last_error(), str))
        fail_msg("\"%s\": message \"%s\" does not name the input", str,
                 cv_last_error());
}

static void test_plain_numbers(void **state)
{
    (void)state;
    expect_size("0", 0);
    expect_size("1", 1);
    expect_size("512", 512);
    expect_size("4096", 4096);
    expect_size("0012", 12);
    expect_size("1073741824", GiB);
    expect_size("18446744073709551615", UINT64_MAX);
    /* A bare byte suffix. */
    expect_size("512B", 512);
    expect_size("512b", 512);
}

static void test_suffixes(void **state)
{
    (void)state;
    expect_size("1K", KiB);
    expect_size("1k", KiB);
    expect_size("4K", 4 * KiB);
    expect_size("1M", MiB);
    expect_size("1m", MiB);
    expect_size("64M", 64 * MiB);
    expect_size("1G", GiB);
    expect_size("3g", 3 * GiB);
    expect_size("1T", TiB);
    expect_size("2t", 2 * TiB);
    expect_size("1P", PiB);
    expect_size("0K", 0);
    expect_size("0G", 0);
}

static void test_iec_spellings(void **state)
{
    (void)state;
    expect_size("1KiB", KiB);
    expect_size("1kib", KiB);
    expect_size("16MiB", 16 * MiB);
    expect_size("2GiB", 2 * GiB);
    expect_size("1TiB", TiB);
    /* "KB", "GB": powers of 1000, as coreutils and the SI read them;
     * never a GiB by surprise. */
    expect_size("1KB", 1000);
    expect_size("1MB", 1000000);
    expect_size("1gb", 1000000000);
    expect_size("1GB", 1000000000);
    expect_size("2TB", 2000000000000ull);
    expect_size("1EB", 1000000000000000000ull);
    expect_size("1E", 1024 * PiB);
    expect_size("1EiB", 1024 * PiB);
}

/* Decimals that come out whole bytes, and the form sizes are printed in. */
static void test_decimals(void **state)
{
    (void)state;
    expect_size("1.5G", GiB + GiB / 2);
    expect_size("1.5GiB", GiB + GiB / 2);
    expect_size("0.5K", 512);
    expect_size("1.25M", MiB + MiB / 4);
    expect_size("1.5GB", 1500000000);
    expect_size("1.0", 1);
    expect_size("1.5 GiB", GiB + GiB / 2);
    expect_size("16 MiB", 16 * MiB);
    expect_size("512 B", 512);
    expect_reject("1.1K", -EINVAL);         /* 1126.4 bytes */
    expect_reject("0.3", -EINVAL);
    expect_reject("1.", -EINVAL);
    expect_reject(".5G", -EINVAL);
    expect_reject("1.2.3G", -EINVAL);
    expect_reject("1.0000000000000000000001K", -EINVAL);
    expect_reject("15.9999999999E", -EINVAL);
    expect_reject("16.5E", -ERANGE);
}

static void test_rejects_garbage(void **state)
{
    (void)state;
    expect_reject("", -EINVAL);
    expect_reject("abc", -EINVAL);
    expect_reject("K", -EINVAL);
    expect_reject("M1", -EINVAL);
    expect_reject("1X", -EINVAL);
    expect_reject("1KX", -EINVAL);
    expect_reject("1KiBB", -EINVAL);
    expect_reject("1Ki", -EINVAL);
    expect_reject("1BB", -EINVAL);
    expect_reject("1,5G", -EINVAL);
    expect_reject("1  G", -EINVAL);
    expect_reject("1 ", -EINVAL);
    expect_reject(" 1", -EINVAL);
    expect_reject("0x10", -EINVAL);
    expect_reject("1e6", -EINVAL);
    expect_reject("1G2", -EINVAL);
    expect_reject("+1", -EINVAL);
}

static void test_rejects_null(void **state)
{
    uint64_t got = 7;

    (void)state;
    assert_int_equal(cv_parse_size(NULL, &got), -EINVAL);
    assert_int_equal(got, 7);
}

static void test_rejects_negative(void **state)
{
    (void)state;
    /* strtoull would quietly wrap these to huge positive numbers. */
    expect_reject("-1", -EINVAL);
    expect_reject("-0", -EINVAL);
    expect_reject("-1K", -EINVAL);
    expect_reject("-18446744073709551615", -EINVAL);
}

static void test_rejects_overflow(void **state)
{
    (void)state;
    /* Past 2^64 - 1 as a plain number. */
    expect_reject("18446744073709551616", -ERANGE);
    expect_reject("99999999999999999999999", -ERANGE);
    /* Fits as a number, overflows once the suffix is applied. */
    expect_reject("18014398509481984K", -ERANGE);      /* 2^54 KiB = 2^64 */
    expect_reject("17592186044416M", -ERANGE);         /* 2^44 MiB */
    expect_reject("17179869184G", -ERANGE);            /* 2^34 GiB */
    expect_reject("16777216T", -ERANGE);               /* 2^24 TiB */
    expect_reject("16384P", -ERANGE);                  /* 2^14 PiB */
    expect_reject("18446744073709551615K", -ERANGE);
    /* The largest that still fit. */
    expect_size("18014398509481983K", UINT64_MAX - (KiB - 1));
    expect_size("16777215T", 16777215ull * TiB);
    expect_size("16383P", 16383ull * PiB);
}

/* Formatting goes up to EiB: "1024.0 PiB" is not how anyone says it. */
static void test_format(void **state)
{
    char buf[32];

    (void)state;
    assert_string_equal(cv_format_size(512, buf, sizeof buf), "512 B");
    assert_string_equal(cv_format_size(1536, buf, sizeof buf), "1.5 KiB");
    assert_string_equal(cv_format_size(PiB, buf, sizeof buf), "1.0 PiB");
    assert_string_equal(cv_format_size(1024 * PiB, buf, sizeof buf),
                        "1.0 EiB");
    assert_string_equal(cv_format_size(UINT64_MAX, buf, sizeof buf),
                        "16.0 EiB");
}

/* Exact when the decimal says it all, else with the byte count. */
static void test_format_exact(void **state)
{
    char buf[64];

    (void)state;
    assert_string_equal(cv_format_size_exact(512, buf, sizeof buf), "512 B");
    assert_string_equal(cv_format_size_exact(GiB + GiB / 2, buf, sizeof buf),
                        "1.5 GiB");
    assert_string_equal(cv_format_size_exact(16 * MiB, buf, sizeof buf),
                        "16.0 MiB");
    assert_string_equal(cv_format_size_exact(GiB + 1, buf, sizeof buf),
                        "1.0 GiB (1073741825 bytes)");
    assert_string_equal(cv_format_size_exact(1000000000, buf, sizeof buf),
                        "953.7 MiB (1000000000 bytes)");
    assert_string_equal(cv_format_size_exact(1024 * PiB, buf, sizeof buf),
                        "1.0 EiB");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_numbers),
        cmocka_unit_test(test_suffixes),
        cmocka_unit_test(test_iec_spellings),
        cmocka_unit_test(test_rejects_garbage),
        cmocka_unit_test(test_rejects_null),
        cmocka_unit_test(test_rejects_negative),
        cmocka_unit_test(test_rejects_overflow),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_exact),
        cmocka_unit_test(test_decimals),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
