/* cv_seal / cv_unseal: AES-256-GCM bound to the secret's name. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "crypto/seal.h"

static const unsigned char key[CV_SEAL_KEY_LEN] = "0123456789abcdef0123456789abcde";
static const unsigned char other[CV_SEAL_KEY_LEN] = "0123456789abcdef0123456789abcdX";

static void seal_roundtrip(void **state)
{
    const char value[] = "correct horse battery staple";
    unsigned char *blob = NULL;
    struct cv_secret s;
    size_t len;

    (void)state;
    assert_int_equal(cv_seal(key, "db1", value, sizeof value - 1, &blob, &len), 0);
    assert_int_equal(len, sizeof value - 1 + CV_SEAL_OVERHEAD);
    assert_int_equal(blob[0], CV_SEAL_VERSION);
    /* No clear text in the blob. */
    assert_null(memmem(blob, len, "horse", 5));
    assert_int_equal(cv_unseal(key, "db1", blob, len, &s), 0);
    assert_int_equal(s.len, sizeof value - 1);
    assert_memory_equal(s.data, value, s.len);
    cv_secret_free(&s);
    free(blob);
}

/* Two seals of one value differ: the nonce is random. */
static void seal_nonce_random(void **state)
{
    unsigned char *a = NULL, *b = NULL;
    size_t la, lb;

    (void)state;
    assert_int_equal(cv_seal(key, "x", "same", 4, &a, &la), 0);
    assert_int_equal(cv_seal(key, "x", "same", 4, &b, &lb), 0);
    assert_int_equal(la, lb);
    assert_memory_not_equal(a, b, la);
    free(a);
    free(b);
}

static void unseal_rejects(void **state)
{
    unsigned char *blob = NULL;
    struct cv_secret s;
    size_t len, i;

    (void)state;
    assert_int_equal(cv_seal(key, "db1", "value", 5, &blob, &len), 0);
    /* Another name: the value cannot move to another secret. */
    assert_int_equal(cv_unseal(key, "db2", blob, len, &s), -CV_EWRONGKEY);
    assert_null(s.data);
    assert_non_null(strstr(cv_last_error(), "secret db2"));
    /* Another key. */
    assert_int_equal(cv_unseal(other, "db1", blob, len, &s), -CV_EWRONGKEY);
    /* Any flipped bit after the version byte. */
    for (i = 1; i < len; i++) {
        blob[i] ^= 0x01;
        assert_int_equal(cv_unseal(key, "db1", blob, len, &s), -CV_EWRONGKEY);
        blob[i] ^= 0x01;
    }
    /* Truncated. */
    assert_int_equal(cv_unseal(key, "db1", blob, CV_SEAL_OVERHEAD - 1, &s), -EINVAL);
    assert_int_equal(cv_unseal(key, "db1", blob, len - 1, &s), -CV_EWRONGKEY);
    /* Unknown version. */
    blob[0] = 2;
    assert_int_equal(cv_unseal(key, "db1", blob, len, &s), -ENOTSUP);
    free(blob);
}

static void seal_empty_and_binary(void **state)
{
    unsigned char bin[256], *blob = NULL;
    struct cv_secret s;
    size_t len;
    int i;

    (void)state;
    for (i = 0; i < 256; i++)
        bin[i] = (unsigned char)i;
    assert_int_equal(cv_seal(key, "bin", bin, sizeof bin, &blob, &len), 0);
    assert_int_equal(cv_unseal(key, "bin", blob, len, &s), 0);
    assert_int_equal(s.len, sizeof bin);
    assert_memory_equal(s.data, bin, sizeof bin);
    cv_secret_free(&s);
    free(blob);
    assert_int_equal(cv_seal(key, "e", "", 0, &blob, &len), 0);
    assert_int_equal(len, CV_SEAL_OVERHEAD);
    assert_int_equal(cv_unseal(key, "e", blob, len, &s), 0);
    assert_int_equal(s.len, 0);
    cv_secret_free(&s);
    free(blob);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seal_roundtrip),
        cmocka_unit_test(seal_nonce_random),
        cmocka_unit_test(unseal_rejects),
        cmocka_unit_test(seal_empty_and_binary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
