/* cv_tls_issue_dir: a node certificate of a cluster, signed by a CA that
 * cv_tls_init_dir made (or any CA directory with ca-cert.pem and
 * ca-key.pem), written in the layout every cryptvol server and client
 * reads.  A node is server and client of its peers with one key pair:
 * server-* and client-* are the same certificate and key, whose
 * extendedKeyUsage allows both. */
#include "tls.h"
#include "tls-internal.h"
#include "core/error.h"
#include "core/secret-file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* The CN and first DNS name: a node's name (the daemon's --node-name
 * rule: letters, digits, then also '.', '_', '-'; 64 at most, which is
 * also the longest CN X.509 allows). */
#define NAME_MAX_LEN 64

enum { F_CA, F_SCERT, F_SKEY, F_CCERT, F_CKEY, NOUT };
static const char *const out_files[NOUT] = {
    "ca-cert.pem", "server-cert.pem", "server-key.pem", "client-cert.pem",
    "client-key.pem",
};

struct ca {
    X509 *cert;
    EVP_PKEY *key;
    struct cv_secret pem;       /* ca-cert.pem's bytes, copied as they are */
};

static int check_name(const char *name)
{
    size_t i, n = strlen(name);

    for (i = 0; i < n && n <= NAME_MAX_LEN; i++) {
        char c = name[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9');

        if (!alnum && (i == 0 || !strchr("._-", c)))
            break;
    }
    if (n == 0 || i < n)
        return cv_error(-EINVAL, "tls: node name \"%.80s\" is not valid "
                        "(letters, digits, then '.', '_', '-'; at most %d)",
                        name, NAME_MAX_LEN);
    return 0;
}

/* The CA's key must be there: without it nothing can be signed, and a
 * missing one is the likely mistake (a node's directory given as CA_DIR). */
static int read_ca_key(const char *dir, EVP_PKEY **out)
{
    char path[PATH_MAX];
    struct cv_secret s = { 0 };
    BIO *b = NULL;
    int r;

    r = cv_tls_path_in(path, dir, "ca-key.pem");
    if (r < 0)
        return r;
    if (access(path, F_OK) != 0)
        return cv_error(-errno, "tls: %s: %s (CA_DIR must be a CA's "
                        "directory, as cryptvol tls init makes it, with "
                        "ca-key.pem)", path, strerror(errno));
    r = cv_secret_read_file(path, "CA key file", &s);
    if (r < 0)
        return cv_error_prefix(r, "tls");
    b = BIO_new_mem_buf(s.data, (int)s.len);
    *out = b ? PEM_read_bio_PrivateKey(b, NULL, cv_tls_no_password, NULL)
             : NULL;
    if (!*out)
        r = cv_tls_openssl_error(-EINVAL, path);
    BIO_free(b);
    cv_secret_free(&s);
    return r;
}

/* ca-cert.pem, read whole (it is copied to the node's directory as is,
 * with any chain it holds); its first certificate is the issuer. */
static int read_ca_cert(const char *dir, struct ca *ca)
{
    char path[PATH_MAX];
    BIO *b = NULL;
    int fd, r;

    r = cv_tls_path_in(path, dir, "ca-cert.pem");
    if (r < 0)
        return r;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cv_error(-errno, "tls: %s: %s", path, strerror(errno));
    r = cv_secret_read_stream(fd, path, &ca->pem);  /* at most 64 KiB */
    close(fd);
    if (r < 0)
        return cv_error_prefix(r, "tls");
    b = BIO_new_mem_buf(ca->pem.data, (int)ca->pem.len);
    ca->cert = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!ca->cert)
        return cv_tls_openssl_error(-EINVAL, path);
    if (X509_check_ca(ca->cert) == 0)
        return cv_error(-EINVAL, "tls: %s is not a CA certificate (no "
                        "basicConstraints CA:TRUE)", path);
    return 0;
}

static int read_ca(const char *dir, struct ca *ca)
{
    int r = read_ca_key(dir, &ca->key);

    if (r == 0)
        r = read_ca_cert(dir, ca);
    if (r == 0 && X509_check_private_key(ca->cert, ca->key) != 1)
        r = cv_error(-EINVAL, "tls: %s: ca-key.pem is not the key of "
                     "ca-cert.pem", dir);
    return r;
}

static void ca_free(struct ca *ca)
{
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    cv_secret_free(&ca->pem);
}

/* OUT_DIR: made if missing; never one that holds a CA key (a node must
 * not carry the power to sign others); its files are replaced only with
 * force. */
static int check_out(const char *dir, int force)
{
    char path[PATH_MAX];
    struct stat st;
    int i, r = 0;

    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return cv_error(-errno, "tls: %s: %s", dir, strerror(errno));
    r = cv_tls_path_in(path, dir, "ca-key.pem");
    if (r == 0 && lstat(path, &st) == 0)
        r = cv_error(-EEXIST, "tls: %s holds ca-key.pem: a node's directory "
                     "must not hold the CA's key (give another OUT_DIR)",
                     dir);
    for (i = 0; r == 0 && !force && i < NOUT; i++) {
        r = cv_tls_path_in(path, dir, out_files[i]);
        if (r == 0 && lstat(path, &st) == 0)
            r = cv_error(-EEXIST, "tls: %s already exists; refusing to "
                         "overwrite it (--force replaces it)", path);
    }
    return r;
}

/* SAN: the name first, then each host (the name given again is left out). */
static int san_list(const char *name, const char *const *hosts,
                    const char ***out)
{
    size_t n = 0, i, k = 1;
    const char **l;

    while (hosts && hosts[n])
        n++;
    l = calloc(n + 2, sizeof *l);
    if (!l)
        return cv_error(-ENOMEM, "tls: out of memory");
    l[0] = name;
    for (i = 0; i < n; i++)
        if (strcmp(hosts[i], name) != 0)
            l[k++] = hosts[i];
    *out = l;
    return 0;
}

static int write_bytes(const char *dir, const char *file, const void *data,
                       size_t len)
{
    char path[PATH_MAX];
    ssize_t w;
    int fd, r;

    r = cv_tls_path_in(path, dir, file);
    if (r < 0)
        return r;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
              0644);
    if (fd < 0)
        return cv_error(-errno, "tls: %s: %s", path, strerror(errno));
    w = write(fd, data, len);
    if (w >= 0 && w != (ssize_t)len)
        r = cv_error(-EIO, "tls: %s: short write", path);
    else if (w < 0 || fsync(fd) != 0)
        r = cv_error(-errno, "tls: %s: %s", path, strerror(errno));
    if (close(fd) != 0 && r == 0)
        r = cv_error(-errno, "tls: %s: %s", path, strerror(errno));
    if (r < 0)
        unlink(path);
    return r;
}

/* ".NAME.new": where a file is written before it takes its place. */
static void tmp_name(char *buf, size_t len, int i)
{
    snprintf(buf, len, ".%s.new", out_files[i]);
}

static int write_tmp(const char *dir, const struct ca *ca, X509 *cert,
                     EVP_PKEY *key)
{
    char tmp[64], path[PATH_MAX];
    int i, r = 0;

    for (i = 0; r == 0 && i < NOUT; i++) {
        tmp_name(tmp, sizeof tmp, i);
        r = cv_tls_path_in(path, dir, tmp);
        if (r == 0)
            unlink(path);       /* a run that died left it: ours by name */
        if (r == 0)
            r = i == F_CA ? write_bytes(dir, tmp, ca->pem.data, ca->pem.len)
                          : cv_tls_write_pem(dir, tmp, cert,
                                             i == F_SKEY || i == F_CKEY ?
                                             key : NULL);
    }
    return r;
}

static void unlink_tmp(const char *dir)
{
    char tmp[64], path[PATH_MAX];

    for (int i = 0; i < NOUT; i++) {
        tmp_name(tmp, sizeof tmp, i);
        if (cv_tls_path_in(path, dir, tmp) == 0)
            unlink(path);
    }
}

/* Moves the new files into place: with force by rename (a running
 * daemon's reload reads either the old or the new file, never half of
 * one), else by link, which never replaces a file that appeared since
 * check_out looked; then the ones placed are taken back. */
static int place(const char *dir, int force)
{
    char tmp[64], from[PATH_MAX], to[PATH_MAX];
    int i, r = 0, placed = 0;

    for (i = 0; r == 0 && i < NOUT; i++) {
        tmp_name(tmp, sizeof tmp, i);
        r = cv_tls_path_in(from, dir, tmp);
        if (r == 0)
            r = cv_tls_path_in(to, dir, out_files[i]);
        if (r == 0 && (force ? rename(from, to) : link(from, to)) != 0)
            r = cv_error(-errno, "tls: %s: %s", to, strerror(errno));
        if (r == 0)
            placed++;
    }
    for (i = 0; r < 0 && !force && i < placed; i++)
        if (cv_tls_path_in(to, dir, out_files[i]) == 0)
            unlink(to);
    unlink_tmp(dir);
    return r;
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

    if (fd < 0 || fsync(fd) != 0)
        r = cv_error(-errno, "tls: %s: %s", dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    return r;
}

static int check_args(const char *name, const char *const *hosts)
{
    int r = check_name(name);

    for (; r == 0 && hosts && *hosts; hosts++)
        r = cv_tls_check_host(*hosts);
    return r;
}

int cv_tls_issue_dir(const char *ca_dir, const char *out_dir,
                     const char *name, const char *const *hosts, int force)
{
    struct ca ca = { 0 };
    const char **san = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    int r;

    r = check_args(name, hosts);
    if (r == 0)
        r = read_ca(ca_dir, &ca);
    if (r == 0)
        r = check_out(out_dir, force);
    if (r == 0)
        r = san_list(name, hosts, &san);
    if (r == 0 && !(key = EVP_EC_gen("P-256")))
        r = cv_tls_openssl_error(-EIO, "node key");
    if (r == 0)
        r = cv_tls_make_cert(name, key, ca.cert, ca.key, CV_TLS_CERT_NODE,
                             san, &cert);
    if (r == 0)
        r = write_tmp(out_dir, &ca, cert, key);
    if (r == 0)
        r = place(out_dir, force);
    else
        unlink_tmp(out_dir);
    if (r == 0)
        r = sync_dir(out_dir);
    free(san);
    X509_free(cert);
    EVP_PKEY_free(key);
    ca_free(&ca);
    return r;
}
