/* cv_tls_init_dir: a demo CA and a server and a client certificate, in the
 * directory layout nbdkit and qemu read.  EC P-256 keys, SHA-256
 * signatures, ten years, the extensions qemu's certificate checks ask for
 * (it refuses a leaf without digitalSignature and keyEncipherment in a
 * critical keyUsage, or without the right extendedKeyUsage). */
#include "tls.h"
#include "tls-internal.h"
#include "core/error.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define VALID_DAYS 3650

/* They also index struct pki's arrays, in this order (NODE is
 * tls-issue.c's). */
#define CA CV_TLS_CERT_CA
#define SERVER CV_TLS_CERT_SERVER
#define CLIENT CV_TLS_CERT_CLIENT
#define NODE CV_TLS_CERT_NODE

static const char *const files[] = {
    "ca-cert.pem", "ca-key.pem", "server-cert.pem", "server-key.pem",
    "client-cert.pem", "client-key.pem",
};
#define NFILES (sizeof files / sizeof files[0])

static const char *const default_hosts[] = { "localhost", "127.0.0.1", "::1",
                                             NULL };

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *e;
    int ok;

    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    ok = e && X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok ? 0 : cv_tls_openssl_error(-EINVAL, "certificate extension");
}

static GENERAL_NAME *host_name(const char *host)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(host);
    ASN1_IA5STRING *dns = NULL;

    if (g && ip) {
        GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
        return g;
    }
    if (g && !ip && (dns = ASN1_IA5STRING_new()) &&
        ASN1_STRING_set(dns, host, -1)) {
        GENERAL_NAME_set0_value(g, GEN_DNS, dns);
        return g;
    }
    ASN1_OCTET_STRING_free(ip);
    ASN1_IA5STRING_free(dns);
    GENERAL_NAME_free(g);
    return NULL;
}

/* DNS names and IP addresses as GENERAL_NAMEs, built one by one so that a
 * host name can never smuggle a second entry in (as "a,DNS:b" would in
 * OpenSSL's config syntax). */
static int add_san(X509 *x, const char *const *hosts)
{
    GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
    int r = 0;

    if (!names)
        return cv_error(-ENOMEM, "tls: out of memory");
    for (; r == 0 && *hosts; hosts++) {
        GENERAL_NAME *g = host_name(*hosts);

        if (!g || !sk_GENERAL_NAME_push(names, g)) {
            GENERAL_NAME_free(g);
            r = cv_tls_openssl_error(-ENOMEM, *hosts);
        }
    }
    if (r == 0 && !X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, 0))
        r = cv_tls_openssl_error(-EINVAL, "subjectAltName");
    GENERAL_NAMES_free(names);
    return r;
}

static int add_exts(X509 *x, X509 *issuer, enum cv_tls_cert_kind kind,
                    const char *const *hosts)
{
    int r;

    r = add_ext(x, issuer, NID_basic_constraints,
                kind == CA ? "critical,CA:TRUE" : "critical,CA:FALSE");
    if (r == 0)
        r = add_ext(x, issuer, NID_key_usage, kind == CA ?
                    "critical,keyCertSign,cRLSign" :
                    "critical,digitalSignature,keyEncipherment");
    if (r == 0)
        r = add_ext(x, issuer, NID_subject_key_identifier, "hash");
    if (r == 0 && kind != CA)
        r = add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
    if (r == 0 && kind != CA)
        r = add_ext(x, issuer, NID_ext_key_usage,
                    kind == SERVER ? "serverAuth" :
                    kind == CLIENT ? "clientAuth" : "serverAuth,clientAuth");
    if (r == 0 && (kind == SERVER || kind == NODE))
        r = add_san(x, hosts);
    return r;
}

/* A random positive 127-bit serial (RFC 5280: unique, at most 20 bytes). */
static int set_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int ok = bn && BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));

    BN_free(bn);
    return ok ? 0 : cv_tls_openssl_error(-EIO, "serial number");
}

int cv_tls_make_cert(const char *cn, EVP_PKEY *key, X509 *issuer,
                     EVP_PKEY *issuer_key, enum cv_tls_cert_kind kind,
                     const char *const *hosts, X509 **out)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    int r = -ENOMEM;

    *out = NULL;
    if (!x || !name || !X509_set_version(x, X509_VERSION_3) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    (const unsigned char *)cn, -1, -1, 0) ||
        !X509_set_subject_name(x, name) ||
        !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -300) ||   /* clock skew */
        !X509_time_adj_ex(X509_getm_notAfter(x), VALID_DAYS, 0, NULL) ||
        !X509_set_pubkey(x, key)) {
        r = cv_tls_openssl_error(-ENOMEM, cn);
        goto out;
    }
    r = set_serial(x);
    if (r == 0)
        r = add_exts(x, issuer ? issuer : x, kind, hosts);
    if (r == 0 && !X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()))
        r = cv_tls_openssl_error(-EINVAL, cn);
out:
    X509_NAME_free(name);
    if (r < 0)
        X509_free(x);
    else
        *out = x;
    return r;
}

int cv_tls_write_pem(const char *dir, const char *name, X509 *cert,
                    EVP_PKEY *key)
{
    char path[PATH_MAX];
    BIO *b = NULL;
    int fd, ok, r = 0;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
              key ? 0600 : 0644);
    if (fd < 0)
        return cv_error(-errno, "tls: %s: %s", path, strerror(errno));
    b = BIO_new_fd(fd, BIO_NOCLOSE);
    ok = b && (key ? PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL,
                                              NULL)
                   : PEM_write_bio_X509(b, cert)) && BIO_flush(b) == 1;
    if (!ok)
        r = cv_tls_openssl_error(-EIO, path);
    BIO_free(b);
    if (fsync(fd) != 0 && r == 0)
        r = cv_error(-errno, "tls: %s: %s", path, strerror(errno));
    if (close(fd) != 0 && r == 0)
        r = cv_error(-errno, "tls: %s: %s", path, strerror(errno));
    if (r < 0)
        unlink(path);       /* ours: O_EXCL made it */
    return r;
}

int cv_tls_check_host(const char *h)
{
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(h);
    size_t i, n = strlen(h);

    if (ip) {
        ASN1_OCTET_STRING_free(ip);
        return 0;
    }
    if (n == 0 || n > 253)
        goto bad;
    for (i = 0; i < n; i++)
        if (!(isalnum((unsigned char)h[i]) || strchr("-._*", h[i])))
            goto bad;
    return 0;
bad:
    return cv_error(-EINVAL, "tls: host \"%s\" is not a DNS name or an IP "
                    "address", h);
}

static int check_args(const char *dir, const char *const *hosts,
                      const char *client_cn)
{
    char path[PATH_MAX];
    struct stat st;
    size_t i;
    int r = 0;

    for (; r == 0 && *hosts; hosts++)
        r = cv_tls_check_host(*hosts);
    if (r == 0 && (client_cn[0] == '\0' || strlen(client_cn) > 64))
        r = cv_error(-EINVAL, "tls: client CN \"%s\": use 1 to 64 "
                     "characters", client_cn);
    if (r == 0 && mkdir(dir, 0755) != 0 && errno != EEXIST)
        r = cv_error(-errno, "tls: %s: %s", dir, strerror(errno));
    /* All or nothing: look before making anything (write_pem's O_EXCL
     * still catches a file that appears meanwhile). */
    for (i = 0; r == 0 && i < NFILES; i++) {
        if (snprintf(path, sizeof path, "%s/%s", dir, files[i]) >=
            (int)sizeof path)
            r = cv_error(-ENAMETOOLONG, "tls: %s: path too long", dir);
        else if (lstat(path, &st) == 0)
            r = cv_error(-EEXIST, "tls: %s already exists; refusing to "
                         "overwrite it", path);
    }
    return r;
}

struct pki {
    EVP_PKEY *key[3];
    X509 *cert[3];
};

static int make_all(struct pki *p, const char *const *hosts,
                    const char *client_cn)
{
    static const char *const what[] = { "CA key", "server key", "client key" };
    int i, r = 0;

    for (i = 0; r == 0 && i < 3; i++)
        if (!(p->key[i] = EVP_EC_gen("P-256")))
            r = cv_tls_openssl_error(-EIO, what[i]);
    if (r == 0)
        r = cv_tls_make_cert("cryptvol demo CA", p->key[CA], NULL, NULL, CA,
                             NULL, &p->cert[CA]);
    if (r == 0)
        r = cv_tls_make_cert(hosts[0], p->key[SERVER], p->cert[CA],
                             p->key[CA], SERVER, hosts, &p->cert[SERVER]);
    if (r == 0)
        r = cv_tls_make_cert(client_cn, p->key[CLIENT], p->cert[CA],
                             p->key[CA], CLIENT, NULL, &p->cert[CLIENT]);
    return r;
}

int cv_tls_init_dir(const char *dir, const char *const *hosts,
                    const char *client_cn)
{
    struct pki p;
    char path[PATH_MAX];
    size_t done = 0, i;
    int r;

    memset(&p, 0, sizeof p);
    if (!hosts || !hosts[0])
        hosts = default_hosts;
    if (!client_cn)
        client_cn = "cryptvol-client";
    r = check_args(dir, hosts, client_cn);
    if (r == 0)
        r = make_all(&p, hosts, client_cn);
    /* files[] alternates certificate and key, CA, server, client. */
    for (; r == 0 && done < NFILES; done++)
        r = cv_tls_write_pem(dir, files[done],
                             done % 2 ? NULL : p.cert[done / 2],
                             done % 2 ? p.key[done / 2] : NULL);
    if (r < 0)      /* leave nothing half made; a failed file is not ours */
        for (i = 0; i + 1 < done; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            unlink(path);
        }
    for (i = 0; i < 3; i++) {
        EVP_PKEY_free(p.key[i]);
        X509_free(p.cert[i]);
    }
    return r;
}
