/* The admin API over its unix socket, with a raw HTTP/1.1 client: status
 * codes, JSON shapes, error messages, limits.  No NBD: the registry holds
 * only the chains the daemon works on, so no volume is in use. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "admin/admin.h"
#include "daemon.h"
#include "keys/cluster-kek.h"
#include "core/error.h"
#include "keys/keyring.h"
#include "meta/meta.h"
#include "export/export.h"
#include "volumes/jobs.h"
#include "volumes/volumes.h"

struct fixture {
    char dir[PATH_MAX];
    char sock[PATH_MAX + 16];
    struct cvd d;
    struct cvd_admin *admin;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/cv-admin-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->sock, sizeof f->sock, "%s/admin.sock", f->dir);
    f->d.cfg.data_dir = f->dir;
    f->d.cfg.admin_socket = f->sock;
    f->d.cfg.pbkdf = (struct cv_pbkdf){ .type = "pbkdf2", .iterations = 1000 };
    f->d.cfg.node_name = "node1";
    pthread_mutex_init(&f->d.header_lock, NULL);
    if (cvd_meta_open_sqlite(f->dir, &f->d.meta) < 0 ||
        cvd_keyring_new(&f->d, &f->d.keys) < 0 ||
        cvd_cluster_new(&f->d, &f->d.cluster) < 0 ||
        cvd_registry_new(cvd_volumes_resolve, cvd_volumes_unlock,
                         cvd_volumes_list, &f->d, NULL, &f->d.reg) < 0 ||
        cvd_jobs_new(&f->d.jobs) < 0 ||
        cvd_admin_start(&f->d, &f->admin) < 0) {
        fprintf(stderr, "setup: %s\n", cv_last_error());
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[PATH_MAX + 16];

    cvd_admin_stop(f->admin);
    cvd_jobs_free(f->d.jobs);
    cvd_registry_free(f->d.reg);
    cvd_cluster_free(f->d.cluster);
    cvd_keyring_free(f->d.keys);
    cvd_meta_close(f->d.meta);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static int connect_to(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    if (strlen(path) >= sizeof sa.sun_path)
        return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One request; returns the status, *out the parsed JSON body. */
static unsigned http(struct fixture *f, const char *method, const char *path,
                     const char *body, json_object **out)
{
    static char resp[1 << 20];
    char head[1024];
    size_t got = 0, blen = body ? strlen(body) : 0;
    unsigned status = 0;
    ssize_t n;
    char *p;
    int fd = connect_to(f->sock);

    assert_true(fd >= 0);
    snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: localhost\r\n"
             "Connection: close\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n", method, path, blen);
    assert_int_equal(write(fd, head, strlen(head)), (ssize_t)strlen(head));
    if (blen)
        assert_int_equal(write(fd, body, blen), (ssize_t)blen);
    while ((n = read(fd, resp + got, sizeof resp - 1 - got)) > 0)
        got += (size_t)n;
    close(fd);
    resp[got] = '\0';
    assert_int_equal(sscanf(resp, "HTTP/1.1 %u", &status), 1);
    p = strstr(resp, "\r\n\r\n");
    assert_non_null(p);
    *out = json_tokener_parse(p + 4);
    assert_non_null(*out);
    return status;
}

static const char *field(json_object *o, const char *key)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v))
        return NULL;
    return json_object_get_string(v);
}

static void expect_error(struct fixture *f, const char *method, const char *path,
                         const char *body, unsigned status, const char *msg)
{
    json_object *o;

    assert_int_equal(http(f, method, path, body, &o), status);
    assert_non_null(field(o, "error"));
    if (!strstr(field(o, "error"), msg))
        fail_msg("%s %s: error \"%s\" lacks \"%s\"", method, path,
                 field(o, "error"), msg);
    json_object_put(o);
}

static void socket_is_private(void **state)
{
    struct fixture *f = *state;
    struct stat st;
    struct cvd_admin *second;

    assert_int_equal(stat(f->sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    /* A second daemon on the same socket is refused. */
    assert_int_equal(cvd_admin_start(&f->d, &second), -EADDRINUSE);
    assert_non_null(strstr(cv_last_error(), "another cryptvold"));
}

static void status_endpoint(void **state)
{
    struct fixture *f = *state;
    json_object *o;

    assert_int_equal(http(f, "GET", "/v1/status", NULL, &o), 200);
    assert_non_null(field(o, "version"));
    assert_string_equal(field(o, "volumes"), "0");
    json_object_put(o);
    expect_error(f, "GET", "/v1/nothing", NULL, 404, "no such endpoint");
}

static void secrets(void **state)
{
    struct fixture *f = *state;
    json_object *o, *e;

    /* "aHVudGVyMg==" is "hunter2". */
    assert_int_equal(http(f, "POST", "/v1/secrets",
                          "{\"name\":\"s1\",\"value\":\"aHVudGVyMg==\"}", &o), 201);
    assert_string_equal(field(o, "name"), "s1");
    assert_null(field(o, "value"));
    json_object_put(o);
    expect_error(f, "POST", "/v1/secrets", "{\"name\":\"s1\",\"value\":\"eA==\"}",
                 409, "secret s1: already exists");
    expect_error(f, "POST", "/v1/secrets", "{\"name\":\"a/b\",\"value\":\"eA==\"}",
                 400, "not a valid name");
    expect_error(f, "POST", "/v1/secrets", "{\"name\":\"s2\",\"value\":\"not base64!\"}",
                 400, "secret s2: value is not base64");
    expect_error(f, "POST", "/v1/secrets", "{\"name\":\"s2\",\"value\":\"\"}",
                 400, "secret s2: value must be");
    expect_error(f, "POST", "/v1/secrets", "{\"name\":\"s2\"}", 400,
                 "\"value\" (base64) is missing");
    expect_error(f, "POST", "/v1/secrets", "{\"name\":\"s2\",\"value\":\"eA==\","
                 "\"extra\":1}", 400, "unknown field \"extra\"");
    expect_error(f, "GET", "/v1/secrets/s1", NULL, 405, "never returned");

    assert_int_equal(http(f, "GET", "/v1/secrets", NULL, &o), 200);
    assert_int_equal(json_object_array_length(o), 1);
    e = json_object_array_get_idx(o, 0);
    assert_string_equal(field(e, "name"), "s1");
    assert_non_null(field(e, "created"));
    assert_null(strstr(json_object_to_json_string(o), "aHVudGVyMg"));
    json_object_put(o);

    assert_int_equal(http(f, "DELETE", "/v1/secrets/s1", NULL, &o), 200);
    json_object_put(o);
    expect_error(f, "DELETE", "/v1/secrets/s1", NULL, 404, "secret s1: no such secret");
}

static void bad_bodies(void **state)
{
    struct fixture *f = *state;
    char *big;

    expect_error(f, "POST", "/v1/volumes", "{\"name\":", 400, "request body");
    expect_error(f, "POST", "/v1/volumes", "[1,2]", 400, "not a JSON object");
    expect_error(f, "POST", "/v1/volumes", "{} {}", 400, "request body");
    expect_error(f, "POST", "/v1/volumes", "", 400, "empty");
    expect_error(f, "POST", "/v1/volumes", "{\"name\":\"v\",\"size\":-1}", 400,
                 "\"size\" must be a non-negative integer");
    expect_error(f, "POST", "/v1/volumes", "{\"name\":\"v\",\"size\":\"1G\"}", 400,
                 "\"size\" must be");
    expect_error(f, "POST", "/v1/volumes", "{\"size\":4096}", 400,
                 "\"name\" is missing");
    expect_error(f, "POST", "/v1/volumes", "{\"name\":7,\"size\":4096}", 400,
                 "\"name\" must be a string");
    big = malloc(2 << 20);
    assert_non_null(big);
    memset(big, ' ', 2 << 20);
    big[0] = '{';
    big[(2 << 20) - 2] = '}';
    big[(2 << 20) - 1] = '\0';
    expect_error(f, "POST", "/v1/volumes", big, 413, "larger than");
    free(big);
}

static void volumes(void **state)
{
    struct fixture *f = *state;
    json_object *o, *v;

    /* A missing secret: accepted, Pending, with the reason. */
    assert_int_equal(http(f, "POST", "/v1/volumes", "{\"name\":\"wait\","
                          "\"size\":4194304,\"secret\":\"missing\"}", &o), 202);
    assert_string_equal(field(o, "state"), "Pending");
    assert_string_equal(field(o, "reason"), "waiting for secret \"missing\"");
    assert_string_equal(field(o, "secret"), "missing");
    json_object_put(o);
    assert_int_equal(http(f, "DELETE", "/v1/volumes/wait", NULL, &o), 200);
    json_object_put(o);
    expect_error(f, "POST", "/v1/volumes", "{\"name\":\"-x\",\"size\":4194304}",
                 400, "volume \"-x\": not a valid name");
    expect_error(f, "POST", "/v1/volumes", "{\"name\":\"x\",\"size\":4194304,"
                 "\"type\":\"luks3\"}", 400, "type \"luks3\"");
    expect_error(f, "POST", "/v1/volumes", "{\"name\":\"x\",\"size\":4194304,"
                 "\"cipher\":\"des\"}", 400, "cipher \"des\"");
    expect_error(f, "POST", "/v1/volumes", "{\"name\":\"x\",\"size\":4194304,"
                 "\"pbkdf\":{\"type\":\"md5\"}}", 400, "pbkdf type \"md5\"");

    assert_int_equal(http(f, "POST", "/v1/volumes", "{\"name\":\"db1\","
                          "\"size\":4194304,\"pbkdf\":{\"type\":\"pbkdf2\","
                          "\"iterations\":1000}}", &o), 201);
    assert_string_equal(field(o, "name"), "db1");
    assert_string_equal(field(o, "size"), "4194304");
    assert_string_equal(field(o, "type"), "luks2");
    assert_string_equal(field(o, "secret"), "db1");
    assert_string_equal(field(o, "encrypted"), "true");
    assert_string_equal(field(o, "inUse"), "false");
    assert_string_equal(field(o, "keyBits"), "512");
    assert_string_equal(field(o, "sectorSize"), "4096");
    assert_string_equal(field(o, "state"), "Available");
    assert_null(field(o, "reason"));
    assert_null(field(o, "class"));
    assert_non_null(field(o, "uuid"));
    json_object_put(o);
    expect_error(f, "POST", "/v1/volumes", "{\"name\":\"db1\",\"size\":4194304}",
                 409, "volume db1: already exists");

    assert_int_equal(http(f, "POST", "/v1/volumes", "{\"name\":\"raw\","
                          "\"size\":1048576,\"plaintext\":true}", &o), 201);
    assert_string_equal(field(o, "encrypted"), "false");
    assert_string_equal(field(o, "type"), "plaintext");
    assert_null(field(o, "secret"));
    json_object_put(o);

    assert_int_equal(http(f, "GET", "/v1/volumes", NULL, &o), 200);
    assert_int_equal(json_object_array_length(o), 2);
    v = json_object_array_get_idx(o, 0);
    assert_string_equal(field(v, "name"), "db1");
    json_object_put(o);

    assert_int_equal(http(f, "POST", "/v1/volumes/db1/resize",
                          "{\"size\":8388608}", &o), 200);
    assert_string_equal(field(o, "size"), "8388608");
    json_object_put(o);
    expect_error(f, "POST", "/v1/volumes/db1/resize", "{\"size\":4194304}", 400,
                 "allowShrink");
    assert_int_equal(http(f, "POST", "/v1/volumes/db1/resize",
                          "{\"size\":4194304,\"allowShrink\":true}", &o), 200);
    json_object_put(o);
    assert_int_equal(http(f, "GET", "/v1/volumes/db1", NULL, &o), 200);
    assert_string_equal(field(o, "size"), "4194304");
    json_object_put(o);
    expect_error(f, "GET", "/v1/volumes/nope", NULL, 404, "volume nope: no such volume");

    /* The generated secret is in use, then goes with its volume. */
    expect_error(f, "DELETE", "/v1/secrets/db1", NULL, 409,
                 "secret db1: used by volume db1");
    assert_int_equal(http(f, "DELETE", "/v1/volumes/db1", NULL, &o), 200);
    json_object_put(o);
    expect_error(f, "DELETE", "/v1/secrets/db1", NULL, 404, "no such secret");
    expect_error(f, "DELETE", "/v1/volumes/db1", NULL, 404, "no such volume");
    expect_error(f, "PUT", "/v1/volumes/raw", "{}", 405, "use GET or DELETE");
}

static void classes(void **state)
{
    struct fixture *f = *state;
    json_object *o;

    assert_int_equal(http(f, "POST", "/v1/classes", "{\"name\":\"gold\","
                          "\"secret\":\"db-key\",\"type\":\"luks1\","
                          "\"cipher\":\"aes-xts-plain64\",\"keyBits\":256}",
                          &o), 201);
    assert_string_equal(field(o, "name"), "gold");
    assert_string_equal(field(o, "encrypted"), "true");
    assert_string_equal(field(o, "secret"), "db-key");
    assert_null(field(o, "secretTemplate"));
    assert_string_equal(field(o, "type"), "luks1");
    assert_string_equal(field(o, "keyBits"), "256");
    assert_string_equal(field(o, "replicas"), "1");
    json_object_put(o);
    assert_int_equal(http(f, "POST", "/v1/classes", "{\"name\":\"per\","
                          "\"secretTemplate\":\"${volume.name}-key\"}", &o),
                     201);
    json_object_put(o);
    expect_error(f, "POST", "/v1/classes", "{\"name\":\"gold\"}", 409,
                 "class gold: already exists");
    expect_error(f, "POST", "/v1/classes", "{\"name\":\"x\",\"secret\":\"a\","
                 "\"secretTemplate\":\"${volume.name}\"}", 400, "not both");
    expect_error(f, "POST", "/v1/classes", "{\"name\":\"x\","
                 "\"secretTemplate\":\"${pool}\"}", 400,
                 "unknown placeholder \"${pool}\"");
    expect_error(f, "POST", "/v1/classes", "{\"name\":\"x\",\"replicas\":0}",
                 400, "replicas must be at least 1");
    expect_error(f, "POST", "/v1/classes", "{\"name\":\"x\",\"cipher\":\"aes-256\","
                 "\"keyBits\":512}", 400, "a key size goes with");
    expect_error(f, "POST", "/v1/classes", "{\"name\":\"x\",\"colour\":1}",
                 400, "unknown field \"colour\"");
    assert_int_equal(http(f, "GET", "/v1/classes", NULL, &o), 200);
    assert_int_equal(json_object_array_length(o), 2);
    json_object_put(o);

    /* A volume of the class: its settings, Pending until db-key exists. */
    expect_error(f, "POST", "/v1/volumes", "{\"name\":\"v\",\"size\":4194304,"
                 "\"class\":\"gold\",\"cipher\":\"aes-256\"}", 400,
                 "\"cipher\" conflicts with class gold");
    assert_int_equal(http(f, "POST", "/v1/volumes", "{\"name\":\"v\","
                          "\"size\":4194304,\"class\":\"gold\"}", &o), 202);
    assert_string_equal(field(o, "class"), "gold");
    assert_string_equal(field(o, "type"), "luks1");
    json_object_put(o);
    assert_int_equal(http(f, "POST", "/v1/secrets",
                          "{\"name\":\"db-key\",\"value\":\"aHVudGVyMg==\"}",
                          &o), 201);
    json_object_put(o);
    assert_int_equal(http(f, "GET", "/v1/volumes/v", NULL, &o), 200);
    assert_string_equal(field(o, "state"), "Available");
    assert_string_equal(field(o, "keyBits"), "256");
    json_object_put(o);
    expect_error(f, "DELETE", "/v1/classes/gold", NULL, 409,
                 "class gold: used by volume v");

    /* Rekey. */
    assert_int_equal(http(f, "POST", "/v1/secrets",
                          "{\"name\":\"k2\",\"value\":\"aHVudGVyMw==\"}",
                          &o), 201);
    json_object_put(o);
    assert_int_equal(http(f, "POST", "/v1/volumes/v/rekey",
                          "{\"secret\":\"k2\"}", &o), 200);
    assert_string_equal(field(o, "secret"), "k2");
    json_object_put(o);
    expect_error(f, "POST", "/v1/volumes/v/rekey", "{\"secret\":\"k3\"}", 404,
                 "volume v: secret \"k3\" does not exist");
    expect_error(f, "POST", "/v1/volumes/v/rekey", "{}", 400,
                 "\"secret\" (the new secret's name) is missing");

    assert_int_equal(http(f, "DELETE", "/v1/volumes/v", NULL, &o), 200);
    json_object_put(o);
    assert_int_equal(http(f, "DELETE", "/v1/classes/gold", NULL, &o), 200);
    json_object_put(o);
    assert_int_equal(http(f, "GET", "/v1/classes/per", NULL, &o), 200);
    assert_string_equal(field(o, "secretTemplate"), "${volume.name}-key");
    json_object_put(o);
    expect_error(f, "GET", "/v1/classes/gold", NULL, 404, "class gold: no such class");
    expect_error(f, "PUT", "/v1/classes/per", "{}", 405, "use GET or DELETE");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(socket_is_private),
        T(status_endpoint),
        T(secrets),
        T(bad_bodies),
        T(volumes),
        T(classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
