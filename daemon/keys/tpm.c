#include "tpm.h"
#include "core/error.h"
#include "core/secmem.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

/* A blob is: version (1 byte) | TPM2B_PRIVATE | TPM2B_PUBLIC, both as the
 * TPM marshals them, which is what TPM2_Load takes back. */
#define BLOB_VERSION 1

/* MAX_SYM_DATA in the TPM specification: the most a TPM must accept as
 * sealed data (tpm2-tss's buffers allow 256, but TPMs refuse more). */
#define SEAL_MAX 128

/* Without a resource manager (swtpm, /dev/tpm0) every caller shares the
 * TPM's few object and session slots (3 each in libtpms), so concurrent
 * calls can find them full: such a call gives back what it holds and tries
 * again, for up to this long. */
#define BUSY_BUDGET_MS 10000

/* One connection to the TPM for one call: every call has its own, so calls
 * on different threads share nothing. */
struct tpm {
    const char *tcti;           /* for messages */
    TSS2_TCTI_CONTEXT *tctx;
    ESYS_CONTEXT *esys;
    ESYS_TR primary;
    ESYS_TR session;
    ESYS_TR object;
};

/* The storage root key template of the TCG (TPM 2.0 Provisioning Guidance
 * 7.5.1: the EK Credential Profile's template L-2, ECC NIST P-256, with
 * userWithAuth and noDA).  The TPM derives the same key from its owner
 * seed each time, so it is never stored; being the standard SRK, it is the
 * key that other tools would persist at 0x81000001.  noDA, because it has
 * no secret to guess: a TPM locked out by someone's wrong passwords must
 * still unseal the KEK. */
static const TPM2B_PUBLIC srk_template = {
    .publicArea = {
        .type = TPM2_ALG_ECC,
        .nameAlg = TPM2_ALG_SHA256,
        .objectAttributes = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT |
                            TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                            TPMA_OBJECT_SENSITIVEDATAORIGIN |
                            TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA,
        .parameters.eccDetail = {
            .symmetric = {
                .algorithm = TPM2_ALG_AES,
                .keyBits.aes = 128,
                .mode.aes = TPM2_ALG_CFB,
            },
            .scheme.scheme = TPM2_ALG_NULL,
            .curveID = TPM2_ECC_NIST_P256,
            .kdf.scheme = TPM2_ALG_NULL,
        },
        .unique.ecc = {
            .x.size = 32,
            .y.size = 32,
        },
    },
};

/* The sealed KEK: a keyed-hash object with no scheme holds data.  Not
 * sensitiveDataOrigin (we give the data); no policy, no password: what
 * protects it is that only this TPM can load it.  noDA for the same reason
 * as the SRK. */
static const TPM2B_PUBLIC sealed_template = {
    .publicArea = {
        .type = TPM2_ALG_KEYEDHASH,
        .nameAlg = TPM2_ALG_SHA256,
        .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                            TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA,
        .parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL,
    },
};

/* AES-128-CFB is what every TPM 2.0 must support for parameter
 * encryption. */
static const TPMT_SYM_DEF session_symmetric = {
    .algorithm = TPM2_ALG_AES,
    .keyBits.aes = 128,
    .mode.aes = TPM2_ALG_CFB,
};

static const char *tcti_name(const char *tcti)
{
    return tcti ? tcti : "tpm2-tss default TCTI";
}

/* TCTI errors are about reaching the TPM (a socket refused, a device
 * missing), not about what it said. */
static int is_tcti_error(TSS2_RC rc)
{
    return (rc & TSS2_RC_LAYER_MASK) == TSS2_TCTI_RC_LAYER;
}

/* Full object or session memory: a TPM without a resource manager, used by
 * other calls at the same time.  Worth another try. */
static int is_busy(TSS2_RC rc)
{
    return rc == TPM2_RC_OBJECT_MEMORY || rc == TPM2_RC_SESSION_MEMORY ||
           rc == TPM2_RC_MEMORY;
}

/* The message and errno for rc, returned by call (an Esys_* name) while
 * doing what ("sealing"). */
static int tpm_fail(const struct tpm *t, const char *what, const char *call,
                    TSS2_RC rc)
{
    if (is_tcti_error(rc))
        return cv_error(-ENODEV, "TPM (%s) is not reachable: %s: %s: %s",
                        tcti_name(t->tcti), what, call, Tss2_RC_Decode(rc));
    if (is_busy(rc))
        return cv_error(-EBUSY, "TPM (%s): %s: %s: %s (still after %d s of "
                        "retries; without a resource manager such as "
                        "/dev/tpmrm0 its slots are shared with all its "
                        "users)", tcti_name(t->tcti), what, call,
                        Tss2_RC_Decode(rc), BUSY_BUDGET_MS / 1000);
    return cv_error(-EIO, "TPM (%s): %s: %s: %s", tcti_name(t->tcti), what,
                    call, Tss2_RC_Decode(rc));
}

static void flush(struct tpm *t, ESYS_TR *handle)
{
    /* Nothing to do about a failure: a TPM that cannot be reached drops
     * its transient objects when it restarts. */
    if (*handle != ESYS_TR_NONE)
        Esys_FlushContext(t->esys, *handle);
    *handle = ESYS_TR_NONE;
}

static void tpm_close(struct tpm *t)
{
    if (t->esys) {
        flush(t, &t->object);
        flush(t, &t->session);
        flush(t, &t->primary);
        Esys_Finalize(&t->esys);
    }
    Tss2_TctiLdr_Finalize(&t->tctx);
}

/* Connects, derives the SRK and starts a session salted with it: only this
 * TPM can compute the session key, and parameters that cross the bus
 * encrypted with it (the KEK going in, the KEK coming out) are unreadable
 * to anyone listening there. */
static int tpm_open(struct tpm *t, const char *tcti, const char *what)
{
    TSS2_RC rc;

    *t = (struct tpm){
        .tcti = tcti,
        .primary = ESYS_TR_NONE,
        .session = ESYS_TR_NONE,
        .object = ESYS_TR_NONE,
    };
    rc = Tss2_TctiLdr_Initialize(tcti, &t->tctx);
    if (rc != TSS2_RC_SUCCESS) {
        /* Whatever the TCTI's reason (no device, refused connection, no
         * such TCTI library), the TPM cannot be used. */
        t->tctx = NULL;
        return cv_error(-ENODEV, "TPM (%s) is not reachable: %s: "
                        "Tss2_TctiLdr_Initialize: %s", tcti_name(tcti), what,
                        Tss2_RC_Decode(rc));
    }
    rc = Esys_Initialize(&t->esys, t->tctx, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        t->esys = NULL;
        return tpm_fail(t, what, "Esys_Initialize", rc);
    }
    rc = Esys_CreatePrimary(t->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD,
                            ESYS_TR_NONE, ESYS_TR_NONE,
                            &(TPM2B_SENSITIVE_CREATE){ 0 }, &srk_template,
                            &(TPM2B_DATA){ 0 }, &(TPML_PCR_SELECTION){ 0 },
                            &t->primary, NULL, NULL, NULL, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        t->primary = ESYS_TR_NONE;
        return tpm_fail(t, what, "Esys_CreatePrimary (storage key)", rc);
    }
    rc = Esys_StartAuthSession(t->esys, t->primary, ESYS_TR_NONE,
                               ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL,
                               TPM2_SE_HMAC, &session_symmetric,
                               TPM2_ALG_SHA256, &t->session);
    if (rc != TSS2_RC_SUCCESS) {
        t->session = ESYS_TR_NONE;
        return tpm_fail(t, what, "Esys_StartAuthSession", rc);
    }
    rc = Esys_TRSess_SetAttributes(t->esys, t->session,
                                   TPMA_SESSION_DECRYPT |
                                   TPMA_SESSION_ENCRYPT |
                                   TPMA_SESSION_CONTINUESESSION, 0xff);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_fail(t, what, "Esys_TRSess_SetAttributes", rc);
    return 0;
}

static long ms_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000L +
           (t1.tv_nsec - t0->tv_nsec) / 1000000L;
}

/* After the attempt-th try (from 0) found the TPM busy: waits and returns
 * 1 to try again, or 0 when BUSY_BUDGET_MS since start is spent.  The
 * pause is random up to a bound that doubles each time (to 256 ms), so
 * calls that collided spread out instead of colliding again. */
static int busy_wait(const struct timespec *start, int attempt)
{
    long bound = 2L << (attempt < 7 ? attempt : 7), ms;
    struct timespec ts;
    unsigned int rnd;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (RAND_bytes((unsigned char *)&rnd, sizeof rnd) != 1)
        rnd = (unsigned int)ts.tv_nsec;
    ms = 1 + (long)(rnd % (unsigned long)bound);
    if (ms_since(start) + ms > BUSY_BUDGET_MS)
        return 0;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = ms % 1000 * 1000000L;
    nanosleep(&ts, NULL);
    return 1;
}

static int blob_pack(const TPM2B_PRIVATE *priv, const TPM2B_PUBLIC *pub,
                     unsigned char **blob, size_t *bloblen)
{
    size_t max = 1 + sizeof *priv + sizeof *pub, off = 1;
    unsigned char *b;
    TSS2_RC rc;

    b = malloc(max);
    if (!b)
        return cv_error(-ENOMEM, "TPM: sealing: out of memory");
    b[0] = BLOB_VERSION;
    rc = Tss2_MU_TPM2B_PRIVATE_Marshal(priv, b, max, &off);
    if (rc == TSS2_RC_SUCCESS)
        rc = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, b, max, &off);
    if (rc != TSS2_RC_SUCCESS) {
        free(b);
        return cv_error(-EIO, "TPM: sealing: marshalling the sealed "
                        "object: %s", Tss2_RC_Decode(rc));
    }
    *blob = b;
    *bloblen = off;
    return 0;
}

/* Checks everything that can be checked without the TPM, so that garbage
 * is refused as such rather than as a TPM error. */
static int blob_unpack(const unsigned char *blob, size_t bloblen,
                       TPM2B_PRIVATE *priv, TPM2B_PUBLIC *pub)
{
    size_t off = 1;
    TSS2_RC rc;

    if (!blob || bloblen < 1)
        return cv_error(-EINVAL, "TPM-sealed KEK: empty");
    if (blob[0] != BLOB_VERSION)
        return cv_error(-EINVAL, "TPM-sealed KEK: format version %u, not %u "
                        "(damaged, or not a TPM-sealed KEK)", blob[0],
                        BLOB_VERSION);
    rc = Tss2_MU_TPM2B_PRIVATE_Unmarshal(blob, bloblen, &off, priv);
    if (rc != TSS2_RC_SUCCESS)
        return cv_error(-EINVAL, "TPM-sealed KEK of %zu bytes: private part "
                        "damaged or truncated: %s", bloblen,
                        Tss2_RC_Decode(rc));
    rc = Tss2_MU_TPM2B_PUBLIC_Unmarshal(blob, bloblen, &off, pub);
    if (rc != TSS2_RC_SUCCESS)
        return cv_error(-EINVAL, "TPM-sealed KEK of %zu bytes: public part "
                        "damaged or truncated: %s", bloblen,
                        Tss2_RC_Decode(rc));
    if (off != bloblen)
        return cv_error(-EINVAL, "TPM-sealed KEK: %zu trailing byte%s after "
                        "its end (damaged)", bloblen - off,
                        bloblen - off == 1 ? "" : "s");
    if (priv->size == 0 || pub->publicArea.type != TPM2_ALG_KEYEDHASH)
        return cv_error(-EINVAL, "TPM-sealed KEK: not a sealed-data object "
                        "(damaged)");
    return 0;
}

static int seal_once(const char *tcti, const TPM2B_SENSITIVE_CREATE *sens,
                     unsigned char **blob, size_t *bloblen)
{
    TPM2B_PRIVATE *priv = NULL;
    TPM2B_PUBLIC *pub = NULL;
    struct tpm t;
    TSS2_RC rc;
    int r;

    r = tpm_open(&t, tcti, "sealing");
    if (r < 0)
        goto out;
    /* The session encrypts the first parameter, inSensitive: the KEK. */
    rc = Esys_Create(t.esys, t.primary, t.session, ESYS_TR_NONE, ESYS_TR_NONE,
                     sens, &sealed_template, &(TPM2B_DATA){ 0 },
                     &(TPML_PCR_SELECTION){ 0 }, &priv, &pub, NULL, NULL,
                     NULL);
    if (rc != TSS2_RC_SUCCESS) {
        r = tpm_fail(&t, "sealing", "Esys_Create", rc);
        goto out;
    }
    r = blob_pack(priv, pub, blob, bloblen);
out:
    tpm_close(&t);
    Esys_Free(priv);
    Esys_Free(pub);
    return r;
}

int cvd_tpm_seal(const char *tcti, const void *data, size_t len,
                 unsigned char **blob, size_t *bloblen)
{
    TPM2B_SENSITIVE_CREATE *sens;
    struct timespec start;
    int attempt, r;

    *blob = NULL;
    *bloblen = 0;
    if (len == 0 || len > SEAL_MAX)
        return cv_error(-EINVAL, "TPM: sealing %zu bytes: a TPM seals 1 to "
                        "%d bytes", len, SEAL_MAX);
    sens = cv_secmem_alloc(sizeof *sens);
    if (!sens)
        return cv_error_prefix(-ENOMEM, "TPM: sealing");
    sens->sensitive.data.size = (UINT16)len;
    memcpy(sens->sensitive.data.buffer, data, len);
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (attempt = 0;; attempt++) {
        r = seal_once(tcti, sens, blob, bloblen);
        if (r != -EBUSY || !busy_wait(&start, attempt))
            break;
    }
    cv_secmem_free(sens, sizeof *sens);
    return r;
}

/* Copies the unsealed KEK into locked memory. */
static int take_data(const TPM2B_SENSITIVE_DATA *d, struct cv_secret *out)
{
    if (d->size == 0)
        return cv_error(-EIO, "TPM: unsealing: the TPM returned no data");
    out->data = cv_secmem_alloc(d->size);
    if (!out->data)
        return cv_error_prefix(-ENOMEM, "TPM: unsealing");
    out->alloc = d->size;
    out->len = d->size;
    memcpy(out->data, d->buffer, d->size);
    return 0;
}

static int unseal_once(const char *tcti, const TPM2B_PRIVATE *priv,
                       const TPM2B_PUBLIC *pub, struct cv_secret *out)
{
    TPM2B_SENSITIVE_DATA *data = NULL;
    struct tpm t;
    TSS2_RC rc;
    int r;

    r = tpm_open(&t, tcti, "unsealing");
    if (r < 0)
        goto out;
    rc = Esys_Load(t.esys, t.primary, t.session, ESYS_TR_NONE, ESYS_TR_NONE,
                   priv, pub, &t.object);
    if (rc != TSS2_RC_SUCCESS) {
        t.object = ESYS_TR_NONE;
        /* The private part is encrypted and authenticated with a key from
         * the SRK, which comes from this TPM's owner seed: another TPM's
         * (or one cleared since) fails its integrity check. */
        if (!is_tcti_error(rc) && !is_busy(rc))
            r = cv_error(-EIO, "TPM (%s): this node's TPM did not seal this "
                         "KEK (Esys_Load: %s)", tcti_name(tcti),
                         Tss2_RC_Decode(rc));
        else
            r = tpm_fail(&t, "unsealing", "Esys_Load", rc);
        goto out;
    }
    /* Give back the SRK's slot before unsealing: the loaded object does not
     * need its parent any more. */
    flush(&t, &t.primary);
    /* The session encrypts the first response parameter: the KEK. */
    rc = Esys_Unseal(t.esys, t.object, t.session, ESYS_TR_NONE, ESYS_TR_NONE,
                     &data);
    if (rc != TSS2_RC_SUCCESS) {
        data = NULL;
        r = tpm_fail(&t, "unsealing", "Esys_Unseal", rc);
        goto out;
    }
    r = take_data(data, out);
out:
    if (data) {
        OPENSSL_cleanse(data, sizeof *data);
        Esys_Free(data);
    }
    tpm_close(&t);
    return r;
}

int cvd_tpm_unseal(const char *tcti, const unsigned char *blob,
                   size_t bloblen, struct cv_secret *out)
{
    TPM2B_PRIVATE priv = { 0 };
    TPM2B_PUBLIC pub = { 0 };
    struct timespec start;
    int attempt, r;

    memset(out, 0, sizeof *out);
    r = blob_unpack(blob, bloblen, &priv, &pub);
    if (r < 0)
        return r;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (attempt = 0;; attempt++) {
        r = unseal_once(tcti, &priv, &pub, out);
        if (r != -EBUSY || !busy_wait(&start, attempt))
            break;
    }
    return r;
}
