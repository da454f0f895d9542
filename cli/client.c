#include "args.h"
#include "cli.h"
#include "client.h"
#include "core/error.h"
#include "core/secmem.h"
#include "core/secret-file.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The answer as it arrives. */
struct answer {
    char *data;
    size_t len;
};

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    struct answer *ans = arg;
    size_t len = size * n;
    char *bigger;

    if (ans->len + len > 64u << 20)
        return 0;               /* no admin answer is this large */
    bigger = realloc(ans->data, ans->len + len + 1);
    if (!bigger)
        return 0;
    ans->data = bigger;
    memcpy(ans->data + ans->len, p, len);
    ans->len += len;
    ans->data[ans->len] = '\0';
    return len;
}

static const char *where(const struct cli_admin *a)
{
    return a->url ? a->url : a->socket;
}

static int unreachable(const struct cli_admin *a, CURL *c, CURLcode cc)
{
    long os_errno = 0;
    const char *why = curl_easy_strerror(cc);

    curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os_errno);
    if (cc == CURLE_COULDNT_CONNECT && os_errno == ECONNREFUSED)
        why = "connection refused";
    else if (cc == CURLE_COULDNT_CONNECT && os_errno == ENOENT)
        why = "connection refused (no socket there; is cryptvold running?)";
    else if (cc == CURLE_COULDNT_CONNECT && os_errno == EACCES)
        why = "permission denied";
    return cv_error(-ECONNREFUSED, "cannot reach cryptvold at %s: %s",
                    where(a), why);
}

static int status_errno(long status)
{
    switch (status) {
    case 400: case 413: return -EINVAL;
    case 404: return -ENOENT;
    case 409: return -EBUSY;
    case 503: return -EAGAIN;       /* etcd unreachable, a node joining */
    default: return -EIO;
    }
}

/* Turns the HTTP answer into *out or the daemon's error message. */
static int parse_answer(const struct cli_admin *a, long status,
                        const struct answer *ans, json_object **out)
{
    json_object *o = ans->data ? json_tokener_parse(ans->data) : NULL, *e;
    int r;

    if (!o)
        return cv_error(-EIO, "cryptvold at %s: unexpected answer (HTTP %ld, "
                        "not JSON)", where(a), status);
    if (status >= 200 && status < 300) {
        *out = o;
        return 0;
    }
    r = status_errno(status);
    /* A secret that opens no keyslot (volume import): exit status 3, as
     * the image commands give for a wrong passphrase, whatever the HTTP
     * status it comes with. */
    if (!strcmp(cli_str(o, "code"), "WrongKey"))
        r = -CV_EWRONGKEY;
    /* A volume whose data is on another node of the cluster. */
    if (!strcmp(cli_str(o, "code"), "WrongNode"))
        r = -EREMOTE;
    if (json_object_object_get_ex(o, "error", &e) && e)
        cv_error(r, "%s", json_object_get_string(e));
    else
        cv_error(r, "cryptvold at %s: HTTP %ld", where(a), status);
    json_object_put(o);
    return r;
}

static void tls_file(CURL *c, CURLoption opt, const char *dir, const char *name)
{
    char path[4096];

    snprintf(path, sizeof path, "%s/%s", dir, name);
    curl_easy_setopt(c, opt, path);     /* libcurl copies it */
}

static int has_client_cert(const char *dir)
{
    char path[4096];

    snprintf(path, sizeof path, "%s/client-cert.pem", dir);
    return access(path, R_OK) == 0;
}

static int setup(struct cli_admin *a, CURL *c, const char *path)
{
    char url[1024];

    if (!a->url && !a->socket)
        a->socket = getenv("CRYPTVOL_SOCKET");
    if (!a->url && (!a->socket || !a->socket[0]))
        a->socket = CLI_DEFAULT_SOCKET;
    if (a->url) {
        snprintf(url, sizeof url, "%s%s", a->url, path);
        if (a->tls_dir && !has_client_cert(a->tls_dir))
            return cv_error(-EINVAL, "--tls-dir %s: no client-cert.pem: "
                            "cryptvold's HTTPS admin API needs an admin "
                            "certificate (see docs/admin-api.md, HTTPS)",
                            a->tls_dir);
        if (a->tls_dir) {
            tls_file(c, CURLOPT_CAINFO, a->tls_dir, "ca-cert.pem");
            tls_file(c, CURLOPT_SSLCERT, a->tls_dir, "client-cert.pem");
            tls_file(c, CURLOPT_SSLKEY, a->tls_dir, "client-key.pem");
        }
    } else {
        snprintf(url, sizeof url, "http://localhost%s", path);
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, a->socket);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    return 0;
}

int cli_admin_call(struct cli_admin *a, const char *method, const char *path,
                   const char *body, size_t len, json_object **out)
{
    struct curl_slist *headers = NULL;
    struct answer ans = { 0 };
    char errbuf[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURLcode cc;
    CURL *c;
    int r;

    *out = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(c = curl_easy_init()))
        return cv_error(-ENOMEM, "libcurl did not start");
    r = setup(a, c, path);
    if (r < 0) {
        curl_easy_cleanup(c);
        return r;
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &ans);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    cc = curl_easy_perform(c);
    if (cc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        r = parse_answer(a, status, &ans, out);
    } else if (cc == CURLE_COULDNT_CONNECT) {
        r = unreachable(a, c, cc);
    } else {
        r = cv_error(-EIO, "cryptvold at %s: %s", where(a),
                     errbuf[0] ? errbuf : curl_easy_strerror(cc));
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    curl_global_cleanup();
    free(ans.data);
    return r;
}

int cli_admin_call_json(struct cli_admin *a, const char *method,
                        const char *path, json_object *body, json_object **out)
{
    const char *text = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN);

    return cli_admin_call(a, method, path, text, strlen(text), out);
}

int cli_admin_call_secret(struct cli_admin *a, const char *method,
                          const char *path, const char *name,
                          const char *field, const struct cv_secret *s,
                          json_object **out)
{
    json_object *jname = json_object_new_string(name ? name : "");
    const char *qname = json_object_to_json_string(jname);
    size_t cap = strlen(qname) + strlen(field) + (s->len + 2) / 3 * 4 + 32;
    char *body = cv_secmem_alloc(cap);
    int n = 0, r;

    if (!body) {
        json_object_put(jname);
        return cv_error(-ENOMEM, "out of memory");
    }
    n = snprintf(body, cap, "{");
    if (name)
        n += snprintf(body + n, cap - (size_t)n, "\"name\":%s,", qname);
    n += snprintf(body + n, cap - (size_t)n, "\"%s\":\"", field);
    n += EVP_EncodeBlock((unsigned char *)body + n,
                         (const unsigned char *)s->data, (int)s->len);
    n += snprintf(body + n, cap - (size_t)n, "\"}");
    r = cli_admin_call(a, method, path, body, (size_t)n, out);
    cv_secmem_free(body, cap);
    json_object_put(jname);
    return r;
}

int cli_admin_finish(struct cli_admin *a, int r, json_object *out,
                     void (*human)(json_object *))
{
    if (r < 0)
        return cli_fail(r);
    if (a->json)
        cli_print_json(out);
    else
        human(out);
    json_object_put(out);
    return EXIT_OK;
}

static const char *kind_word(enum cli_arg_kind k)
{
    return k == CLI_ARG_SECRET ? "secret" : k == CLI_ARG_CLASS ? "class" :
           k == CLI_ARG_SNAPSHOT ? "snapshot" :
           k == CLI_ARG_BACKUP ? "backup" : "volume";
}

int cli_admin_call_on_name(struct cli_args *a, const char *method,
                           const char *prefix, void (*print)(json_object *))
{
    json_object *out = NULL;
    char path[256];
    int r;

    r = cli_admin_path(path, sizeof path, kind_word(a->cmd->arg_kind), prefix,
                       a->arg[0], "");
    if (r == 0)
        r = cli_admin_call(&a->admin, method, path, NULL, 0, &out);
    return cli_admin_finish(&a->admin, r, out, print);
}

int cli_admin_get(struct cli_args *a, const char *path,
                  void (*print)(json_object *))
{
    json_object *out = NULL;
    int r = cli_admin_call(&a->admin, "GET", path, NULL, 0, &out);

    return cli_admin_finish(&a->admin, r, out, print);
}

void cli_print_json(json_object *o)
{
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                           JSON_C_TO_STRING_NOSLASHESCAPE));
}

const char *cli_str(json_object *o, const char *key)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || !v)
        return "";
    return json_object_get_string(v);
}

long long cli_int(json_object *o, const char *key)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || !v)
        return 0;
    return (long long)json_object_get_int64(v);
}

int cli_bool(json_object *o, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(o, key, &v) && v &&
           json_object_get_boolean(v);
}

int cli_admin_path(char *buf, size_t len, const char *what, const char *prefix,
                   const char *name, const char *suffix)
{
    size_t n = strlen(name);

    if (n == 0 || n > 64 || name[0] == '.' || name[0] == '_' ||
        name[0] == '-' || strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "abcdefghijklmnopqrstuvwxyz0123456789._-") != n)
        return cv_error(-EINVAL, "%s \"%.64s\": not a valid name (1 to 64 "
                        "letters, digits, '.', '_' or '-', starting with a "
                        "letter or digit)", what, name);
    snprintf(buf, len, "%s%s%s", prefix, name, suffix);
    return 0;
}
