/* Who a TLS peer proved to be: the names an access decision may use.  A
 * name is taken only when authentication vouches for it (a PSK from our
 * file, a certificate that verified), and only whole. */
#include "tls.h"
#include "tls-internal.h"

#include <errno.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* Copies a name of len bytes if it is printable ASCII that fits; 0 if it
 * was left out. */
static int take_name(char dst[CV_TLS_NAME_MAX + 1], const unsigned char *s,
                     size_t len)
{
    if (len == 0 || len > CV_TLS_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return 0;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 1;
}

static void take_cn(X509 *cert, struct cv_tls_peer *out)
{
    X509_NAME *subj = X509_get_subject_name(cert);
    int i = -1, last = -1;
    ASN1_STRING *d;

    /* The most specific commonName, as host name checks take it. */
    while ((i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0)
        last = i;
    if (last < 0)
        return;
    d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, last));
    /* Only the string types that hold ASCII as bytes; others (BMP,
     * UTF8 with non-ASCII) fail take_name or are skipped here. */
    if (d && (ASN1_STRING_type(d) == V_ASN1_UTF8STRING ||
              ASN1_STRING_type(d) == V_ASN1_PRINTABLESTRING ||
              ASN1_STRING_type(d) == V_ASN1_IA5STRING))
        take_name(out->cn, ASN1_STRING_get0_data(d),
                  (size_t)ASN1_STRING_length(d));
}

static void take_dns(X509 *cert, struct cv_tls_peer *out)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name,
                                            NULL, NULL);
    int n = names ? sk_GENERAL_NAME_num(names) : 0;

    for (int i = 0; i < n && out->ndns < CV_TLS_MAX_DNS; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);

        if (g->type == GEN_DNS &&
            take_name(out->dns[out->ndns],
                      ASN1_STRING_get0_data(g->d.dNSName),
                      (size_t)ASN1_STRING_length(g->d.dNSName)))
            out->ndns++;
    }
    GENERAL_NAMES_free(names);
}

const char *cv_tls_peer_node_name(const struct cv_tls_peer *p)
{
    if (p->auth != CV_TLS_AUTH_CERT)
        return NULL;
    return p->cn[0] ? p->cn : p->ndns ? p->dns[0] : NULL;
}

int cv_tls_cert_file_identity(const char *path, struct cv_tls_peer *out)
{
    BIO *b = BIO_new_file(path, "r");
    X509 *cert = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

    memset(out, 0, sizeof *out);
    BIO_free(b);
    if (!cert)
        return cv_tls_openssl_error(-EINVAL, path);
    /* Our own certificate: nothing to verify, only to read. */
    out->auth = CV_TLS_AUTH_CERT;
    take_cn(cert, out);
    take_dns(cert, out);
    X509_free(cert);
    return 0;
}

void cv_tls_peer_identity(SSL *ssl, struct cv_tls_peer *out)
{
    const char *id = SSL_get_ex_data(ssl, cv_tls_ex_ssl());
    X509 *cert = SSL_get0_peer_certificate(ssl);

    memset(out, 0, sizeof *out);
    /* The PSK callbacks record the identity they accepted; it was used
     * only if the handshake resumed that (external PSK) session. */
    if (id && SSL_session_reused(ssl)) {
        if (take_name(out->psk, (const unsigned char *)id, strlen(id)))
            out->auth = CV_TLS_AUTH_PSK;
        return;
    }
    /* A certificate the server did not verify (none was asked for) is no
     * identity at all. */
    if (!cert || SSL_get_verify_result(ssl) != X509_V_OK ||
        !(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
        return;
    out->auth = CV_TLS_AUTH_CERT;
    take_cn(cert, out);
    take_dns(cert, out);
}
