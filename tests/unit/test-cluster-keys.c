/* The KEYS message a member gives a joining node (cluster/cluster-keys.h):
 * a round trip, and each malformed answer refused whole with a message
 * naming the member and what is wrong. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/cluster-keys.h"
#include "core/error.h"
#include "core/secmem.h"
#include "luks/kek-token.h"

static unsigned char seal[CV_KEK_LEN], kek1[CV_KEK_LEN], kek2[CV_KEK_LEN];

static int setup(void **state)
{
    (void)state;
    memset(seal, 0x5a, sizeof seal);
    memset(kek1, 0x01, sizeof kek1);
    memset(kek2, 0x02, sizeof kek2);
    return 0;
}

/* The seal key and generations 1 and 2, encoded. */
static void three(unsigned char **buf, size_t *len)
{
    const struct cvd_keys_entry e[] = { { 0, seal }, { 1, kek1 }, { 2, kek2 } };

    assert_int_equal(cvd_keys_encode(e, 3, buf, len), 0);
    assert_int_equal(*len, 4 + 3 * (8 + CV_KEK_LEN));
}

static void roundtrip(void **state)
{
    struct cvd_keys_entry out[8];
    unsigned char *buf;
    size_t len, n;

    (void)state;
    three(&buf, &len);
    assert_int_equal(cvd_keys_decode("n1", buf, len, out, 8, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(out[0].gen, 0);
    assert_memory_equal(out[0].key, seal, CV_KEK_LEN);
    assert_int_equal(out[1].gen, 1);
    assert_memory_equal(out[1].key, kek1, CV_KEK_LEN);
    assert_int_equal(out[2].gen, 2);
    assert_memory_equal(out[2].key, kek2, CV_KEK_LEN);
    cv_secmem_free(buf, len);
}

/* decode must fail with -EPROTO and a message holding want. */
static void refused(const unsigned char *buf, size_t len, size_t max,
                    const char *want)
{
    struct cvd_keys_entry out[8];
    size_t n = 99;

    cv_clear_error();
    assert_int_equal(cvd_keys_decode("n1", buf, len, out, max, &n), -EPROTO);
    assert_int_equal(n, 0);
    if (!strstr(cv_last_error(), want) || !strstr(cv_last_error(), "node n1"))
        fail_msg("message \"%s\" lacks \"%s\" or the node", cv_last_error(),
                 want);
}

static void put(unsigned char *p, uint32_t v)
{
    v = htonl(v);
    memcpy(p, &v, 4);
}

static void malformed(void **state)
{
    unsigned char *buf, copy[4 + 3 * (8 + CV_KEK_LEN) + 1];
    size_t len;

    (void)state;
    three(&buf, &len);
    memcpy(copy, buf, len);
    refused(copy, 0, 8, "0 bytes");
    refused(copy, 3, 8, "3 bytes");
    refused(copy, 4 + 4, 8, "cut short at key 1");
    refused(copy, len - 1, 8, "cut short in key 3");
    copy[len] = 0;
    refused(copy, len + 1, 8, "1 bytes after the last key");
    refused(copy, len, 2, "3 keys, at most 2");
    put(copy + 4 + 4, 16);                  /* key 1's length */
    refused(copy, len, 8, "key 1 has 16 bytes, not 32");
    memcpy(copy, buf, len);
    put(copy + 4 + 8 + CV_KEK_LEN, 2);      /* key 2 says gen 2 too */
    refused(copy, len, 8, "KEK generation 2 given twice");
    memcpy(copy, buf, len);
    put(copy + 4, 7);                       /* the seal key becomes gen 7 */
    refused(copy, len, 8, "no seal key");
    put(copy, 0);                           /* no key at all */
    refused(copy, 4, 8, "no seal key");
    cv_secmem_free(buf, len);
}

static void too_many(void **state)
{
    struct cvd_keys_entry e[CVD_KEYS_MAX + 2];
    unsigned char *buf = (unsigned char *)"x";
    size_t len = 1, i;

    (void)state;
    for (i = 0; i < CVD_KEYS_MAX + 2; i++)
        e[i] = (struct cvd_keys_entry){ (uint32_t)i, kek1 };
    assert_int_equal(cvd_keys_encode(e, CVD_KEYS_MAX + 2, &buf, &len), -E2BIG);
    assert_null(buf);
    assert_int_equal(len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip),
        cmocka_unit_test(malformed),
        cmocka_unit_test(too_many),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
