/* cvd_tpm_seal / cvd_tpm_unseal against swtpm.
 *
 * The TPM cases need $SWTPM_TCTI (and the other-TPM case $SWTPM_TCTI2, a
 * second swtpm with its own state): tests/tpm-unit.sh starts both and runs
 * this program.  Without them those cases are skipped and the cases that
 * need no TPM (argument and blob checks, an unreachable TPM) still run. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <tss2/tss2_mu.h>

#include "core/error.h"
#include "keys/tpm.h"

static const char *tpm1(void)
{
    const char *t = getenv("SWTPM_TCTI");

    if (!t || !*t) {
        print_message("SWTPM_TCTI is not set (tests/tpm-unit.sh sets it)\n");
        skip();
    }
    return t;
}

static const char *tpm2(void)
{
    const char *t = getenv("SWTPM_TCTI2");

    if (!t || !*t) {
        print_message("SWTPM_TCTI2 is not set (tests/tpm-unit.sh sets it)\n");
        skip();
    }
    return t;
}

static void fill(unsigned char *p, size_t len, unsigned seed)
{
    size_t i;

    for (i = 0; i < len; i++)
        p[i] = (unsigned char)(seed + i * 131 + (i >> 3));
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
           (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* A blob that parses (version 1, a private part, a keyed-hash public part)
 * but that no TPM sealed, for the cases that must fail before or at the
 * TPM. */
static unsigned char *fake_blob(size_t *len)
{
    TPM2B_PRIVATE priv = { .size = 40 };
    TPM2B_PUBLIC pub = {
        .publicArea = {
            .type = TPM2_ALG_KEYEDHASH,
            .nameAlg = TPM2_ALG_SHA256,
            .objectAttributes = TPMA_OBJECT_FIXEDTPM |
                                TPMA_OBJECT_FIXEDPARENT |
                                TPMA_OBJECT_USERWITHAUTH,
            .parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL,
            .unique.keyedHash.size = 32,
        },
    };
    size_t max = 1 + sizeof priv + sizeof pub, off = 1;
    unsigned char *b = malloc(max);

    assert_non_null(b);
    memset(priv.buffer, 0x5a, priv.size);
    b[0] = 1;
    assert_int_equal(Tss2_MU_TPM2B_PRIVATE_Marshal(&priv, b, max, &off), 0);
    assert_int_equal(Tss2_MU_TPM2B_PUBLIC_Marshal(&pub, b, max, &off), 0);
    *len = off;
    return b;
}

/* A loopback port nobody listens on. */
static int dead_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void seal_rejects_sizes(void **state)
{
    unsigned char big[129] = { 0 }, *blob = (unsigned char *)"x";
    size_t len = 7;

    (void)state;
    /* Refused before any TPM is looked for. */
    assert_int_equal(cvd_tpm_seal("device:/nonexistent", big, 0, &blob, &len),
                     -EINVAL);
    assert_null(blob);
    assert_int_equal(len, 0);
    assert_int_equal(cvd_tpm_seal("device:/nonexistent", big, sizeof big,
                                  &blob, &len), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "129 bytes"));
}

static void unseal_rejects_garbage(void **state)
{
    static const unsigned char junk[] = "this is not a sealed KEK at all";
    unsigned char *blob, *longer;
    struct cv_secret s;
    size_t len, i;

    (void)state;
    /* No TPM is needed to refuse these: the TCTI would say unreachable. */
    assert_int_equal(cvd_tpm_unseal("device:/nonexistent", junk, 0, &s),
                     -EINVAL);
    assert_null(s.data);
    assert_int_equal(cvd_tpm_unseal("device:/nonexistent", junk,
                                    sizeof junk, &s), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "TPM-sealed KEK"));
    blob = fake_blob(&len);
    for (i = 0; i < len; i++) {
        assert_int_equal(cvd_tpm_unseal("device:/nonexistent", blob, i, &s),
                         -EINVAL);
        assert_null(s.data);
    }
    blob[0] = 2;
    assert_int_equal(cvd_tpm_unseal("device:/nonexistent", blob, len, &s),
                     -EINVAL);
    assert_non_null(strstr(cv_last_error(), "version 2"));
    blob[0] = 1;
    longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, blob, len);
    longer[len] = 0;
    assert_int_equal(cvd_tpm_unseal("device:/nonexistent", longer, len + 1,
                                    &s), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "1 trailing byte after"));
    free(longer);
    free(blob);
}

static void unreachable_tpm(void **state)
{
    unsigned char kek[32], *blob = NULL;
    char tcti[64];
    struct cv_secret s;
    size_t len;

    (void)state;
    fill(kek, sizeof kek, 1);
    snprintf(tcti, sizeof tcti, "swtpm:host=127.0.0.1,port=%d", dead_port());
    assert_int_equal(cvd_tpm_seal(tcti, kek, sizeof kek, &blob, &len),
                     -ENODEV);
    assert_null(blob);
    print_message("%s\n", cv_last_error());
    assert_non_null(strstr(cv_last_error(), tcti));
    assert_non_null(strstr(cv_last_error(), "not reachable"));

    blob = fake_blob(&len);
    assert_int_equal(cvd_tpm_unseal(tcti, blob, len, &s), -ENODEV);
    assert_null(s.data);
    assert_non_null(strstr(cv_last_error(), tcti));
    /* A TPM device that does not exist, and a TCTI that does not. */
    assert_int_equal(cvd_tpm_unseal("device:/nonexistent/tpmrm0", blob, len,
                                    &s), -ENODEV);
    assert_non_null(strstr(cv_last_error(), "device:/nonexistent/tpmrm0"));
    assert_int_equal(cvd_tpm_unseal("nosuchtcti", blob, len, &s), -ENODEV);
    assert_non_null(strstr(cv_last_error(), "nosuchtcti"));
    free(blob);
}

static void seal_unseal_roundtrip(void **state)
{
    static const size_t sizes[] = { 32, 1, 128 };
    const char *tcti = tpm1();
    unsigned char kek[128], *blob;
    struct cv_secret s;
    size_t i, len;

    (void)state;
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        fill(kek, sizes[i], (unsigned)i + 7);
        blob = NULL;
        assert_int_equal(cvd_tpm_seal(tcti, kek, sizes[i], &blob, &len), 0);
        assert_non_null(blob);
        assert_int_equal(blob[0], 1);
        /* Only the TPM can read what it sealed. */
        if (sizes[i] >= 8)
            assert_null(memmem(blob, len, kek, 8));
        assert_int_equal(cvd_tpm_unseal(tcti, blob, len, &s), 0);
        assert_int_equal(s.len, sizes[i]);
        assert_memory_equal(s.data, kek, sizes[i]);
        cv_secret_free(&s);
        free(blob);
    }
}

/* What the daemon pays for one seal and one unseal: each call connects,
 * derives the storage key and starts a salted session anew. */
static void seal_unseal_cost(void **state)
{
    enum { N = 10 };
    const char *tcti = tpm1();
    double seal_ms[N], unseal_ms[N], seal_sum = 0, unseal_sum = 0;
    double seal_min = 1e9, unseal_min = 1e9;
    unsigned char kek[32], *blob;
    struct timespec t0;
    struct cv_secret s;
    size_t len;
    int i;

    (void)state;
    fill(kek, sizeof kek, 99);
    for (i = 0; i < N; i++) {
        blob = NULL;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(cvd_tpm_seal(tcti, kek, sizeof kek, &blob, &len), 0);
        seal_ms[i] = ms_since(&t0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(cvd_tpm_unseal(tcti, blob, len, &s), 0);
        unseal_ms[i] = ms_since(&t0);
        assert_memory_equal(s.data, kek, sizeof kek);
        cv_secret_free(&s);
        free(blob);
        seal_sum += seal_ms[i];
        unseal_sum += unseal_ms[i];
        seal_min = seal_ms[i] < seal_min ? seal_ms[i] : seal_min;
        unseal_min = unseal_ms[i] < unseal_min ? unseal_ms[i] : unseal_min;
    }
    print_message("TPM cost over %d runs (swtpm): seal %.1f ms mean, %.1f ms "
                  "min; unseal %.1f ms mean, %.1f ms min; blob %zu bytes\n",
                  N, seal_sum / N, seal_min, unseal_sum / N, unseal_min, len);
}

static void other_tpm_refused(void **state)
{
    const char *a = tpm1(), *b = tpm2();
    unsigned char kek[32], *blob = NULL;
    struct cv_secret s;
    size_t len;

    (void)state;
    fill(kek, sizeof kek, 3);
    assert_int_equal(cvd_tpm_seal(a, kek, sizeof kek, &blob, &len), 0);
    assert_int_equal(cvd_tpm_unseal(b, blob, len, &s), -EIO);
    assert_null(s.data);
    print_message("%s\n", cv_last_error());
    assert_non_null(strstr(cv_last_error(), "did not seal this KEK"));
    assert_non_null(strstr(cv_last_error(), b));
    /* The first TPM still unseals it. */
    assert_int_equal(cvd_tpm_unseal(a, blob, len, &s), 0);
    assert_memory_equal(s.data, kek, sizeof kek);
    cv_secret_free(&s);
    free(blob);
}

/* A blob that parses but was changed: the TPM's integrity check refuses
 * it; a cut one is refused before the TPM sees it. */
static void damaged_blob_refused(void **state)
{
    const char *tcti = tpm1();
    unsigned char kek[32], *blob = NULL;
    struct cv_secret s;
    size_t len, i;

    (void)state;
    fill(kek, sizeof kek, 5);
    assert_int_equal(cvd_tpm_seal(tcti, kek, sizeof kek, &blob, &len), 0);
    for (i = 0; i < len; i++) {
        assert_int_equal(cvd_tpm_unseal(tcti, blob, i, &s), -EINVAL);
        assert_null(s.data);
    }
    /* The private part's last byte (its size is blob[1..2], big-endian):
     * inside the encrypted, integrity-protected sensitive area. */
    i = 2 + ((size_t)blob[1] << 8 | blob[2]);
    blob[i] ^= 0x01;
    assert_int_equal(cvd_tpm_unseal(tcti, blob, len, &s), -EIO);
    assert_null(s.data);
    assert_non_null(strstr(cv_last_error(), "did not seal this KEK"));
    blob[i] ^= 0x01;
    assert_int_equal(cvd_tpm_unseal(tcti, blob, len, &s), 0);
    cv_secret_free(&s);
    free(blob);
}

struct unsealer {
    const char *tcti;
    const unsigned char *blob, *kek;
    size_t len;
    int failures;
    char error[256];
};

static void *unseal_many(void *arg)
{
    struct unsealer *u = arg;
    struct cv_secret s;
    int i, r;

    for (i = 0; i < 3; i++) {
        r = cvd_tpm_unseal(u->tcti, u->blob, u->len, &s);
        if (r < 0 || s.len != 32 || memcmp(s.data, u->kek, 32) != 0) {
            u->failures++;
            snprintf(u->error, sizeof u->error, "%d: %s", r, cv_last_error());
        }
        cv_secret_free(&s);
    }
    return NULL;
}

/* swtpm has no resource manager and 3 object slots: concurrent calls must
 * still all succeed.  Two threads: each call's retries must fit its 10 s
 * budget also on a loaded CI machine under ASan. */
static void parallel_unseals(void **state)
{
    enum { THREADS = 2 };
    const char *tcti = tpm1();
    unsigned char kek[32], *blob = NULL;
    struct unsealer u[THREADS];
    pthread_t th[THREADS];
    size_t len;
    int i;

    (void)state;
    fill(kek, sizeof kek, 11);
    assert_int_equal(cvd_tpm_seal(tcti, kek, sizeof kek, &blob, &len), 0);
    for (i = 0; i < THREADS; i++) {
        u[i] = (struct unsealer){ .tcti = tcti, .blob = blob, .kek = kek,
                                  .len = len };
        assert_int_equal(pthread_create(&th[i], NULL, unseal_many, &u[i]), 0);
    }
    for (i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        if (u[i].failures)
            print_message("thread %d: %d failures, last %s\n", i,
                          u[i].failures, u[i].error);
        assert_int_equal(u[i].failures, 0);
    }
    free(blob);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seal_rejects_sizes),
        cmocka_unit_test(unseal_rejects_garbage),
        cmocka_unit_test(unreachable_tpm),
        cmocka_unit_test(seal_unseal_roundtrip),
        cmocka_unit_test(seal_unseal_cost),
        cmocka_unit_test(other_tpm_refused),
        cmocka_unit_test(damaged_blob_refused),
        cmocka_unit_test(parallel_unseals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
