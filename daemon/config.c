#include "config.h"
#include "meta/meta.h"
#include "peer/peer.h"
#include "core/error.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_DATA_DIR   "/var/lib/cryptvol"
#define DEFAULT_NBD_LISTEN "127.0.0.1:10809"

const struct cvd_config_key cvd_config_keys[] = {
    { "data-dir", 1, "where metadata and volume images live" },
    { "audit-dir", 1, "where the audit log lives (default DATA-DIR; a file "
                      "system of its own stays writable when volumes fill "
                      "theirs)" },
    { "nbd-listen", 1, "NBD on TCP HOST:PORT, or \"none\"" },
    { "nbd-unix", 1, "NBD on a unix socket PATH" },
    { "admin-socket", 1, "admin API unix socket (default DATA-DIR/admin.sock)" },
    { "admin-listen", 1, "admin API over HTTPS on HOST:PORT" },
    { "admin-tls-dir", 1, "HTTPS admin: ca-cert.pem (the admin CA), "
                          "server-cert.pem, server-key.pem" },
    { "admin-allow", 1, "HTTPS admin identities: cn:NAME,dns:NAME,..." },
    { "admin-max-connections", 1, "HTTPS admin connections at once "
                                  "(default 64)" },
    { "admin-max-per-peer", 1, "HTTPS admin connections from one address "
                               "(default 16)" },
    { "metrics-listen", 1, "Prometheus /metrics over plain HTTP on "
                           "HOST:PORT, for scrapers that cannot use the "
                           "admin socket (default: off)" },
    { "metrics-volume-names", 0, "metrics-listen also serves the per-volume "
                                 "series, labelled with volume names, to "
                                 "whoever can connect" },
    { "tls", 1, "off, on or require (default require)" },
    { "tls-dir", 1, "X.509: ca-cert.pem, server-cert.pem, server-key.pem" },
    { "tls-psk", 1, "PSK file of identity:hexkey lines" },
    { "tls-verify-peer", 0, "require client certificates signed by the CA" },
    { "nbd-allow-anonymous", 0, "let NBD clients with no certificate, PSK "
                                "or unix uid open volumes (warned)" },
    { "nbd-access-default", 1, "open or closed: volumes without allow "
                               "entries (default open)" },
    { "nbd-unix-group", 1, "group that may use the NBD unix socket "
                           "(mode 0660; default 0600)" },
    { "foreground", 0, "do not detach" },
    { "allow-core-dumps", 0, "let the daemon dump core, for debugging (key "
                             "memory stays out of the dump)" },
    { "pid-file", 1, "write the daemon's PID here" },
    { "log-level", 1, "error, warning, notice, info or debug" },
    { "log-file", 1, "log to FILE (reopened on SIGHUP, for logrotate); "
                     "default: the journal under systemd, stderr in the "
                     "foreground, syslog when detached" },
    { "nbd-threads", 1, "request worker threads per connection" },
    { "crypto-threads", 1, "threads that help encrypt a large request "
                           "(default: one per CPU but one; at most 256)" },
    { "pbkdf", 1, "KDF for new keyslots: argon2id, argon2i, pbkdf2" },
    { "pbkdf-iterations", 1, "KDF iterations (fixed cost)" },
    { "pbkdf-memory", 1, "KDF memory in KiB" },
    { "pbkdf-time-ms", 1, "KDF time in milliseconds" },
    { "node-name", 1, "this node's name in the cluster (default: hostname)" },
    { "etcd-endpoints", 1, "a cluster: etcd's client URLs, "
      "https://HOST:PORT[,URL...] (without it: a single node on SQLite)" },
    { "etcd-tls-dir", 1, "etcd client TLS: ca-cert.pem, client-cert.pem, "
      "client-key.pem" },
    { "etcd-prefix", 1, "the cluster's keys in etcd start with this "
      "(default /cryptvol/)" },
    { "etcd-timeout-ms", 1, "one etcd request at most this long "
      "(default 5000)" },
    { "peer-listen", 1, "the peer port other nodes reach this one on, "
      "HOST:PORT" },
    { "peer-tls-dir", 1, "this node's certificate from the cluster CA: "
      "ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, "
      "client-key.pem" },
    { "peer-tls", 1, "the peer port's TLS: off (dial plaintext), on (dial "
      "TLS, accept both) or require (TLS only: the default); SIGHUP "
      "rereads it" },
    { "node-lease-ttl", 1, "seconds without a keepalive before a node is "
      "Offline (default 10)" },
    { "tpm-tcti", 1, "TPM 2.0 to seal the cluster KEK with (tpm2-tss TCTI, "
                     "e.g. device:/dev/tpmrm0)" },
    { "rotation-delay-ms", 1, "tests: pause per volume of a KEK rotation, "
                              "20x at each state" },
    { "backup-target", 1, "directory backups are stored in (an NFS mount "
                          "in practice; docs/backup.md)" },
    { "backup-delay-ms", 1, "tests: pause per block of a backup or "
                            "restore" },
    { "pending-retry-interval", 1, "seconds between retries of volumes "
                                   "waiting for their secret (default 5, "
                                   "0: only when a secret is created here)" },
    /* Bounds against clients that want to hurt (bounds.c). */
    { "max-unlocks", 1, "key derivations at once, daemon-wide (default 2)" },
    { "unlock-retry-delay", 1, "seconds before a volume whose unlock "
                               "failed is tried again (default 1)" },
    { "nbd-max-connections", 1, "NBD connections at most (default: from "
                                "RLIMIT_NOFILE, at most 1024)" },
    { "nbd-max-connections-per-host", 1, "NBD connections per client "
                                         "address (default 128, 0: any)" },
    { "nbd-handshake-timeout", 1, "seconds for a whole NBD handshake, TLS "
                                  "included (default 30)" },
    { "nbd-idle-timeout", 1, "seconds without requests before an NBD "
                             "connection is closed (default 0: never)" },
    { "nbd-buffer-limit", 1, "request memory per NBD connection "
                             "(default 128M)" },
    { "nbd-buffer-total", 1, "request memory for all NBD connections "
                             "(default 1G)" },
    { "audit-refused-burst", 1, "refused attempts per minute recorded in "
                                "full per event, volume and client "
                                "(default 10)" },
    { NULL, 0, NULL },
};

void cvd_config_defaults(struct cvd_config *c)
{
    memset(c, 0, sizeof *c);
    c->tls_mode = CVD_TLS_REQUIRE;
    c->log_level = LOG_INFO;
    c->pending_retry_interval = 5;
    cvd_bounds_defaults(&c->bounds);
}

static int set_string(char **field, const char *val)
{
    char *s = strdup(val);

    if (!s)
        return cv_error(-ENOMEM, "config: out of memory");
    free(*field);
    *field = s;
    return 0;
}

static int parse_bool(const char *key, const char *val, int *out)
{
    if (!val || !strcmp(val, "true") || !strcmp(val, "yes") ||
        !strcmp(val, "1") || !strcmp(val, "on"))
        *out = 1;
    else if (!strcmp(val, "false") || !strcmp(val, "no") ||
             !strcmp(val, "0") || !strcmp(val, "off"))
        *out = 0;
    else
        return cv_error(-EINVAL, "%s: \"%s\" is not true or false", key, val);
    return 0;
}

static int parse_u32(const char *key, const char *val, uint32_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(val, &end, 10);
    if (errno || end == val || *end || v > UINT32_MAX || val[0] == '-')
        return cv_error(-EINVAL, "%s: \"%s\" is not a number", key, val);
    *out = (uint32_t)v;
    return 0;
}

/* At most CVD_MAX_CRYPTO_THREADS: a typo must not start a million
 * threads. */
static int set_crypto_threads(struct cvd_config *c, const char *val)
{
    uint32_t n = 0;
    int r = parse_u32("crypto-threads", val, &n);

    if (r == 0 && n > CVD_MAX_CRYPTO_THREADS)
        r = cv_error(-EINVAL, "crypto-threads: %u is more than %u", n,
                     CVD_MAX_CRYPTO_THREADS);
    if (r == 0)
        c->crypto_threads = n;
    return r;
}

static int set_tls_mode(struct cvd_config *c, const char *val)
{
    if (!strcmp(val, "off"))
        c->tls_mode = CVD_TLS_OFF;
    else if (!strcmp(val, "on"))
        c->tls_mode = CVD_TLS_ON;
    else if (!strcmp(val, "require"))
        c->tls_mode = CVD_TLS_REQUIRE;
    else
        return cv_error(-EINVAL, "tls: \"%s\" is not off, on or require",
                        val);
    return 0;
}

static int set_peer_tls(struct cvd_config *c, const char *val)
{
    enum cvd_peer_tls m;
    int r = cvd_peer_tls_parse(val, &m);

    if (r == 0)
        c->peer_tls = (int)m;
    return r;
}

int cvd_config_reread_peer_tls(const char *path, int *mode)
{
    struct cvd_config c;
    int r;

    cvd_config_defaults(&c);
    r = cvd_config_load(&c, path);
    if (r == 0)
        *mode = c.peer_tls;
    cvd_config_free(&c);
    return r;
}

static int set_access_default(struct cvd_config *c, const char *val)
{
    if (strcmp(val, "open") && strcmp(val, "closed"))
        return cv_error(-EINVAL, "nbd-access-default: \"%s\" is not open "
                        "or closed", val);
    c->nbd_access_closed = !strcmp(val, "closed");
    return 0;
}

static int set_pbkdf(struct cvd_config *c, const char *val)
{
    if (strcmp(val, "argon2id") && strcmp(val, "argon2i") &&
        strcmp(val, "pbkdf2"))
        return cv_error(-EINVAL, "pbkdf: \"%s\" is not argon2id, argon2i "
                        "or pbkdf2", val);
    return set_string(&c->pbkdf_type, val);
}

static int set_log_level(struct cvd_config *c, const char *val)
{
    int level = cvd_log_level_parse(val);

    if (level < 0)
        return cv_error(-EINVAL, "log-level: \"%s\" is not error, warning, "
                        "notice, info or debug", val);
    c->log_level = level;
    return 0;
}

static int set_nbd_listen(struct cvd_config *c, const char *val)
{
    c->nbd_listen_off = !strcmp(val, "none") || !*val;
    if (c->nbd_listen_off) {
        free(c->nbd_listen);
        c->nbd_listen = NULL;
        return 0;
    }
    return set_string(&c->nbd_listen, val);
}

static int set_node_name(struct cvd_config *c, const char *val)
{
    if (!cvd_name_valid(val))
        return cv_error(-EINVAL, "node-name: \"%.64s\" is not a valid name "
                        "(letters, digits, '.', '_', '-', at most %d)", val,
                        CVD_NAME_MAX);
    return set_string(&c->node_name, val);
}

/* The host's name, cut at the first dot and to a valid name. */
static int default_node_name(struct cvd_config *c)
{
    char host[256] = "";
    size_t i;

    if (c->node_name)
        return 0;
    gethostname(host, sizeof host - 1);
    host[CVD_NAME_MAX] = '\0';
    for (i = 0; host[i]; i++)
        if (host[i] == '.')
            host[i] = '\0';
    if (!cvd_name_valid(host))
        snprintf(host, sizeof host, "node1");
    return set_string(&c->node_name, host);
}

static int set_value(struct cvd_config *c, const char *key, const char *val)
{
    int r = cvd_bounds_set(&c->bounds, key, val);

    if (r <= 0)
        return r;
    if (!strcmp(key, "data-dir"))
        return set_string(&c->data_dir, val);
    if (!strcmp(key, "audit-dir"))
        return set_string(&c->audit_dir, val);
    if (!strcmp(key, "nbd-listen"))
        return set_nbd_listen(c, val);
    if (!strcmp(key, "nbd-unix"))
        return set_string(&c->nbd_unix, val);
    if (!strcmp(key, "admin-socket"))
        return set_string(&c->admin_socket, val);
    if (!strcmp(key, "admin-listen"))
        return set_string(&c->admin_listen, val);
    if (!strcmp(key, "admin-tls-dir"))
        return set_string(&c->admin_tls_dir, val);
    if (!strcmp(key, "admin-allow"))
        return set_string(&c->admin_allow, val);
    if (!strcmp(key, "admin-max-connections"))
        return parse_u32(key, val, &c->admin_max_connections);
    if (!strcmp(key, "admin-max-per-peer"))
        return parse_u32(key, val, &c->admin_max_per_peer);
    if (!strcmp(key, "metrics-listen"))
        return set_string(&c->metrics_listen, val);
    if (!strcmp(key, "tls"))
        return set_tls_mode(c, val);
    if (!strcmp(key, "tls-dir"))
        return set_string(&c->tls_dir, val);
    if (!strcmp(key, "tls-psk"))
        return set_string(&c->tls_psk, val);
    if (!strcmp(key, "nbd-access-default"))
        return set_access_default(c, val);
    if (!strcmp(key, "nbd-unix-group"))
        return set_string(&c->nbd_unix_group, val);
    if (!strcmp(key, "pid-file"))
        return set_string(&c->pid_file, val);
    if (!strcmp(key, "log-level"))
        return set_log_level(c, val);
    if (!strcmp(key, "log-file"))
        return set_string(&c->log_file, val);
    if (!strcmp(key, "nbd-threads"))
        return parse_u32(key, val, &c->nbd_threads);
    if (!strcmp(key, "crypto-threads"))
        return set_crypto_threads(c, val);
    if (!strcmp(key, "pbkdf"))
        return set_pbkdf(c, val);
    if (!strcmp(key, "pbkdf-iterations"))
        return parse_u32(key, val, &c->pbkdf.iterations);
    if (!strcmp(key, "pbkdf-memory"))
        return parse_u32(key, val, &c->pbkdf.memory_kib);
    if (!strcmp(key, "pbkdf-time-ms"))
        return parse_u32(key, val, &c->pbkdf.time_ms);
    if (!strcmp(key, "node-name"))
        return set_node_name(c, val);
    if (!strcmp(key, "etcd-endpoints"))
        return set_string(&c->etcd_endpoints, val);
    if (!strcmp(key, "etcd-tls-dir"))
        return set_string(&c->etcd_tls_dir, val);
    if (!strcmp(key, "etcd-prefix"))
        return set_string(&c->etcd_prefix, val);
    if (!strcmp(key, "etcd-timeout-ms"))
        return parse_u32(key, val, &c->etcd_timeout_ms);
    if (!strcmp(key, "peer-listen"))
        return set_string(&c->peer_listen, val);
    if (!strcmp(key, "peer-tls-dir"))
        return set_string(&c->peer_tls_dir, val);
    if (!strcmp(key, "peer-tls"))
        return set_peer_tls(c, val);
    if (!strcmp(key, "node-lease-ttl"))
        return parse_u32(key, val, &c->node_lease_ttl);
    if (!strcmp(key, "tpm-tcti"))
        return set_string(&c->tpm_tcti, val);
    if (!strcmp(key, "rotation-delay-ms"))
        return parse_u32(key, val, &c->rotation_delay_ms);
    if (!strcmp(key, "pending-retry-interval"))
        return parse_u32(key, val, &c->pending_retry_interval);
    if (!strcmp(key, "backup-target"))
        return set_string(&c->backup_target, val);
    if (!strcmp(key, "backup-delay-ms"))
        return parse_u32(key, val, &c->backup_delay_ms);
    return cv_error(-EINVAL, "unknown setting \"%s\"", key);
}

int cvd_config_set(struct cvd_config *c, const char *key, const char *val)
{
    if (!strcmp(key, "tls-verify-peer"))
        return parse_bool(key, val, &c->tls_verify_peer);
    if (!strcmp(key, "foreground"))
        return parse_bool(key, val, &c->foreground);
    if (!strcmp(key, "nbd-allow-anonymous"))
        return parse_bool(key, val, &c->nbd_allow_anonymous);
    if (!strcmp(key, "allow-core-dumps"))
        return parse_bool(key, val, &c->allow_core_dumps);
    if (!strcmp(key, "metrics-volume-names"))
        return parse_bool(key, val, &c->metrics_volume_names);
    if (!val)
        return cv_error(-EINVAL, "%s: needs a value", key);
    return set_value(c, key, val);
}

static char *trim(char *s)
{
    char *end;

    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

static int load_line(struct cvd_config *c, char *line)
{
    char *hash = strchr(line, '#'), *eq, *key;

    if (hash)
        *hash = '\0';
    key = trim(line);
    if (!*key)
        return 0;
    eq = strchr(key, '=');
    if (!eq)
        return cvd_config_set(c, key, NULL);
    *eq = '\0';
    return cvd_config_set(c, trim(key), trim(eq + 1));
}

int cvd_config_load(struct cvd_config *c, const char *path)
{
    FILE *f = fopen(path, "re");
    char *line = NULL;
    size_t cap = 0;
    unsigned lineno = 0;
    int r = 0;

    if (!f)
        return cv_error(-errno, "config %s: %s", path, strerror(errno));
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        r = load_line(c, line);
        if (r < 0) {
            cv_error_prefix(r, "config %s:%u", path, lineno);
            break;
        }
    }
    free(line);
    fclose(f);
    return r;
}

static int default_path(char **field, const char *dir, const char *name)
{
    if (*field)
        return 0;
    if (asprintf(field, "%s/%s", dir, name) < 0) {
        *field = NULL;
        return cv_error(-ENOMEM, "config: out of memory");
    }
    return 0;
}

/* HOST:PORT's port must be a number a socket can have: getaddrinfo takes
 * "99999" and binds it modulo 65536, so the daemon would log one port and
 * listen on another.  0 asks the kernel for a free port (the log says
 * which). */
static int check_listen(const char *key, const char *spec)
{
    const char *colon = spec ? strrchr(spec, ':') : NULL;
    unsigned long port;
    char *end;

    if (!spec)
        return 0;
    if (!colon || !colon[1])
        return cv_error(-EINVAL, "%s \"%s\": expected HOST:PORT", key, spec);
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (!isdigit((unsigned char)colon[1]) || *end)
        return cv_error(-EINVAL, "%s \"%s\": port \"%s\" is not a number",
                        key, spec, colon + 1);
    if (errno || port > 65535)
        return cv_error(-EINVAL, "%s \"%s\": port %s is out of range (0 to "
                        "65535; 0 picks a free one)", key, spec, colon + 1);
    return 0;
}

int cvd_config_finish(struct cvd_config *c)
{
    int r = 0;

    if (!c->data_dir)
        r = set_string(&c->data_dir, DEFAULT_DATA_DIR);
    if (r == 0 && !c->audit_dir)
        r = set_string(&c->audit_dir, c->data_dir);
    if (r == 0 && !c->nbd_listen && !c->nbd_listen_off)
        r = set_string(&c->nbd_listen, DEFAULT_NBD_LISTEN);
    if (r == 0)
        r = default_path(&c->admin_socket, c->data_dir, "admin.sock");
    if (r == 0)
        r = default_node_name(c);
    if (r == 0)
        r = check_listen("nbd-listen", c->nbd_listen);
    if (r == 0)
        r = check_listen("admin-listen", c->admin_listen);
    if (r == 0)
        r = check_listen("metrics-listen", c->metrics_listen);
    if (r < 0)
        return r;
    c->pbkdf.type = c->pbkdf_type;
    if (c->tls_mode != CVD_TLS_OFF && !c->tls_dir && !c->tls_psk)
        return cv_error(-EINVAL, "tls %s needs --tls-dir or --tls-psk "
                        "(or --tls off; \"cryptvol tls init DIR\" makes "
                        "test certificates)",
                        c->tls_mode == CVD_TLS_ON ? "on" : "require");
    if (c->tls_verify_peer && !c->tls_dir)
        return cv_error(-EINVAL, "tls-verify-peer needs --tls-dir (the CA "
                        "that signs client certificates)");
    if (c->tls_verify_peer && c->nbd_allow_anonymous)
        return cv_error(-EINVAL, "tls-verify-peer (every TLS client needs "
                        "a certificate or PSK) contradicts "
                        "nbd-allow-anonymous");
    /* Whoever the admin API accepts may delete every volume: never
     * anyone, and never a certificate made for the data path. */
    if (c->admin_listen && !c->admin_tls_dir && !c->admin_allow)
        return cv_error(-EINVAL, "admin-listen needs admin identities: "
                        "--admin-tls-dir DIR (a CA of its own for admin "
                        "certificates) or --admin-allow cn:NAME,... (which "
                        "certificates of --tls-dir's CA may administer)");
    if (c->admin_listen && !c->admin_tls_dir && !c->tls_dir)
        return cv_error(-EINVAL, "admin-listen serves HTTPS and needs "
                        "--admin-tls-dir or --tls-dir");
    if (c->metrics_volume_names && !c->metrics_listen)
        return cv_error(-EINVAL, "metrics-volume-names is about "
                        "metrics-listen, which is not set (the admin API's "
                        "/metrics always has the per-volume series)");
    if (cvd_bounds_check(&c->bounds) < 0)
        return -EINVAL;
    if (!c->nbd_listen && !c->nbd_unix)
        return cv_error(-EINVAL, "nothing to serve: nbd-listen is none and "
                        "there is no nbd-unix");
    return 0;
}

void cvd_config_free(struct cvd_config *c)
{
    free(c->data_dir);
    free(c->backup_target);
    free(c->audit_dir);
    free(c->nbd_listen);
    free(c->nbd_unix);
    free(c->admin_socket);
    free(c->admin_listen);
    free(c->admin_tls_dir);
    free(c->admin_allow);
    free(c->metrics_listen);
    free(c->tls_dir);
    free(c->tls_psk);
    free(c->nbd_unix_group);
    free(c->pid_file);
    free(c->log_file);
    free(c->pbkdf_type);
    free(c->node_name);
    free(c->tpm_tcti);
    free(c->etcd_endpoints);
    free(c->etcd_tls_dir);
    free(c->etcd_prefix);
    free(c->peer_listen);
    free(c->peer_tls_dir);
    memset(c, 0, sizeof *c);
}
