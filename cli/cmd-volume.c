/* volume create, list, info, resize, rekey, delete: volumes managed by
 * cryptvold. */
#include "args.h"
#include "cli.h"
#include "client.h"
#include "core/error.h"
#include "core/size.h"
#include "progress.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* "deriving a key for the secret of class NAME", NAME up to 64. */
#define CLI_NAME_LABEL 128

/* The API's limit (daemon/volumes/volumes.c); the daemon checks the
 * sector multiple and what its file system holds. */
#define VOLUME_MIN 512ull
#define VOLUME_MAX (1ull << 60)

/* Who unlocks it, in words: a secret, the cluster KEK, or nothing. */
static void secret_words(json_object *v, char *buf, size_t len)
{
    const char *secret = cli_str(v, "secret");
    long long gen = cli_int(v, "kekGeneration");

    if (!cli_bool(v, "encrypted"))
        snprintf(buf, len, "NONE (not encrypted: whoever reads the image "
                 "reads the data)");
    else if (secret[0] && gen)
        snprintf(buf, len, "%s (and the cluster KEK, generation %lld)",
                 secret, gen);
    else if (secret[0])
        snprintf(buf, len, "%s", secret);
    else if (gen)
        snprintf(buf, len, "(cluster KEK, generation %lld)", gen);
    else
        snprintf(buf, len, "(none recorded)");
}

/* "uid:0" or "127.0.0.1:40312" when it proved no identity. */
static const char *who(json_object *conn)
{
    const char *id = cli_str(conn, "identity");

    return id[0] ? id : cli_str(conn, "peer");
}

static void print_connections(json_object *v)
{
    json_object *conns = NULL;
    size_t i, n;

    json_object_object_get_ex(v, "connections", &conns);
    n = conns ? json_object_array_length(conns) : 0;
    if (!conns)
        return;                 /* an older cryptvold: not known */
    printf("connections:%s\n", n ? "" : "  none");
    for (i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(conns, i);
        printf("  %-24s %-20s %-7s since %s\n", cli_str(c, "peer"),
               cli_str(c, "identity")[0] ? cli_str(c, "identity") :
               "(anonymous)", cli_bool(c, "tls") ? "TLS" : "no TLS",
               cli_str(c, "since"));
    }
}

static void print_sizes(json_object *v)
{
    char a[64];
    json_object *alloc;

    printf("size:         %s\n", cv_format_size_exact(
               (uint64_t)cli_int(v, "size"), a, sizeof a));
    if (json_object_object_get_ex(v, "allocated", &alloc) && alloc)
        printf("allocated:    %s on disk (header included)\n",
               cv_format_size((uint64_t)cli_int(v, "allocated"), a, sizeof a));
}

/* "a, b", "none": an array of strings. */
static void words(json_object *arr, char *buf, size_t len)
{
    size_t i, n = json_object_array_length(arr), at = 0;

    snprintf(buf, len, "none");
    for (i = 0; i < n && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? ", " : "",
                               json_object_get_string(
                                   json_object_array_get_idx(arr, i)));
}

static const char *job_kind(json_object *job)
{
    const char *k = cli_str(job, "kind");

    return !strcmp(k, "merge") ? "merging snapshot" :
           !strcmp(k, "flatten") ? "flattening" :
           !strcmp(k, "import") ? "importing from" :
           !strcmp(k, "export") ? "exporting to" :
           !strcmp(k, "backup") ? "backing up" :
           !strcmp(k, "restore") ? "restoring from" : k;
}

/* "merging snapshot s1: Running, 40% (400.0 MiB of 1.0 GiB), since T". */
static void print_job(json_object *job)
{
    const char *state = cli_str(job, "state"), *target = cli_str(job, "target");
    uint64_t done = (uint64_t)cli_int(job, "done");
    uint64_t total = (uint64_t)cli_int(job, "total");
    char d[32], t[32];

    printf("job:          %s%s%s: %s", job_kind(job), target[0] ? " " : "",
           target, state);
    if (!strcmp(state, "Running") && total)
        printf(", %u%% (%s of %s), since %s\n",
               (unsigned)(done > total ? 100 : done * 100 / total),
               cv_format_size(done, d, sizeof d),
               cv_format_size(total, t, sizeof t), cli_str(job, "started"));
    else if (!strcmp(state, "Running"))
        printf(", since %s\n", cli_str(job, "started"));
    else
        printf(" %s%s%s\n", cli_str(job, "finished"),
               cli_str(job, "error")[0] ? ": " : "", cli_str(job, "error"));
}

/* The layers: parent, snapshots, the secrets an open needs, the job.
 * Each only when the daemon says it (an older one does not). */
static void print_layers(json_object *v)
{
    json_object *o = NULL;
    char buf[1024];

    if (cli_str(v, "parent")[0])
        printf("parent:       %s\n", cli_str(v, "parent"));
    if (json_object_object_get_ex(v, "snapshots", &o) &&
        json_object_is_type(o, json_type_array)) {
        words(o, buf, sizeof buf);
        printf("snapshots:    %s\n", buf);
    }
    if (json_object_object_get_ex(v, "needsSecrets", &o) &&
        json_object_is_type(o, json_type_array) &&
        json_object_array_length(o) > 0) {
        words(o, buf, sizeof buf);
        printf("open needs:   secret%s %s%s\n",
               json_object_array_length(o) > 1 ? "s" : "", buf,
               json_object_array_length(o) > 1 ? " (its own, then each "
               "ancestor's of its own format)" : "");
    }
    if (json_object_object_get_ex(v, "job", &o) &&
        json_object_is_type(o, json_type_object))
        print_job(o);
}

void cli_print_volume(json_object *v)
{
    char a[64], secret[256];
    json_object *access;

    secret_words(v, secret, sizeof secret);
    printf("name:         %s\n", cli_str(v, "name"));
    print_sizes(v);
    if (!cli_bool(v, "encrypted")) {
        printf("encryption:   NONE (plaintext volume, for comparison only)\n");
        printf("secret:       %s\n", secret);
    } else {
        printf("type:         %s\n", cli_str(v, "type"));
        /* None yet while Pending: there is no header. */
        if (cli_str(v, "uuid")[0])
            printf("uuid:         %s\n", cli_str(v, "uuid"));
        printf("cipher:       %s (AES-%lld, %lld-bit XTS key)\n",
               cli_str(v, "cipher"), cli_int(v, "keyBits") / 2,
               cli_int(v, "keyBits"));
        printf("secret:       %s\n", secret);
        if (cli_str(v, "uuid")[0])
            printf("data offset:  %s\n", cv_format_size_exact(
                       (uint64_t)cli_int(v, "dataOffset"), a, sizeof a));
    }
    if (cli_str(v, "class")[0])
        printf("class:        %s\n", cli_str(v, "class"));
    printf("sector size:  %lld\n", cli_int(v, "sectorSize"));
    printf("in use:       %s\n", cli_bool(v, "inUse") ? "yes" : "no");
    if (cli_str(v, "reason")[0])
        printf("state:        %s (%s)\n", cli_str(v, "state"),
               cli_str(v, "reason"));
    else
        printf("state:        %s\n", cli_str(v, "state"));
    printf("path:         %s\n", cli_str(v, "path"));
    printf("created:      %s\n", cli_str(v, "created"));
    cli_print_replicas(v);
    print_layers(v);
    print_connections(v);
    if (json_object_object_get_ex(v, "access", &access) && access) {
        printf("nbd access:\n");
        cli_print_access(access, "  ");
    }
}

static int parse_create(struct cli_args *a, json_object *body)
{
    struct cv_pbkdf pbkdf = { 0 };
    uint64_t size;
    uint32_t n;

#define ADD(k, v) json_object_object_add(body, k, v)
#define STR(opt, key)                                                    \
    if (cli_value(a, opt))                                              \
        ADD(key, json_object_new_string(cli_value(a, opt)));
    if (cli_size_value(a, "size", VOLUME_MIN, VOLUME_MAX, &size))
        return EXIT_USAGE;
    if (cli_pbkdf_args(a, &pbkdf))
        return EXIT_USAGE;
    ADD("name", json_object_new_string(a->arg[0]));
    ADD("size", json_object_new_int64((int64_t)size));
    STR("secret", "secret")
    STR("type", "type")
    STR("cipher", "cipher")
    STR("class", "class")
    if (cli_flag(a, "plaintext"))
        ADD("plaintext", json_object_new_boolean(1));
    if (cli_value(a, "replicas")) {
        if (cli_u32_value(a, "replicas", &n))
            return EXIT_USAGE;
        ADD("replicas", json_object_new_int64(n));
    }
    if (cli_value(a, "min-replicas")) {
        if (cli_u32_value(a, "min-replicas", &n))
            return EXIT_USAGE;
        ADD("minReplicas", json_object_new_int64(n));
    }
    if (pbkdf.type || pbkdf.iterations || pbkdf.memory_kib || pbkdf.time_ms) {
        json_object *p = json_object_new_object();
        if (pbkdf.type)
            json_object_object_add(p, "type", json_object_new_string(pbkdf.type));
        if (pbkdf.iterations)
            json_object_object_add(p, "iterations", json_object_new_int64(pbkdf.iterations));
        if (pbkdf.memory_kib)
            json_object_object_add(p, "memoryKib", json_object_new_int64(pbkdf.memory_kib));
        if (pbkdf.time_ms)
            json_object_object_add(p, "timeMs", json_object_new_int64(pbkdf.time_ms));
        ADD("pbkdf", p);
    }
#undef STR
#undef ADD
    return -1;
}

/* The secret names closest to name ("temp" for "temm"), or "". */
static void similar_secret(struct cli_admin *ad, const char *name, char *buf,
                           size_t len)
{
    json_object *all = NULL;
    size_t i, n;
    int best = 3;

    buf[0] = '\0';
    if (cli_admin_call(ad, "GET", "/v1/secrets", NULL, 0, &all) < 0) {
        cv_clear_error();
        return;
    }
    n = json_object_array_length(all);
    for (i = 0; i < n; i++) {
        const char *s = cli_str(json_object_array_get_idx(all, i), "name");
        int d = cli_distance(name, s);
        if (d < best) {
            best = d;
            snprintf(buf, len, "%s", s);
        }
    }
    json_object_put(all);
}

/* A Pending volume is not what most creates mean: say why, on stderr. */
static void warn_pending(struct cli_admin *ad, json_object *v)
{
    const char *secret = cli_str(v, "secret");
    char near[80];

    if (strcmp(cli_str(v, "state"), "Pending"))
        return;
    similar_secret(ad, secret, near, sizeof near);
    cli_warn("volume %s is Pending: secret \"%s\" does not exist%s%s%s; the "
             "volume is made (and served) once it is created: cryptvol "
             "secret create %s --from-file F", cli_str(v, "name"), secret,
             near[0] ? " (did you mean \"" : "", near, near[0] ? "\"?)" : "",
             secret);
}


/* Whether the create makes a keyslot for a user's secret with the daemon's
 * key derivation, which is slow on purpose (cryptsetup's argon2id takes
 * seconds): then a terminal is told, while it waits.  A generated secret
 * (no secret, or a class without one) gets PBKDF2 at its minimum cost, as
 * does an explicit --pbkdf pbkdf2.  A class is asked for its secret only
 * on a terminal, where the notice shows. */
static int derives_key(struct cli_admin *a, json_object *body, char *label,
                       size_t len)
{
    json_object *v, *cls = NULL;
    char path[256];
    int slow = 0;

    if (json_object_object_get_ex(body, "pbkdf", &v) &&
        !strcmp(cli_str(v, "type"), "pbkdf2"))
        return 0;
    if (cli_str(body, "secret")[0]) {
        snprintf(label, len, "deriving a key for secret %s",
                 cli_str(body, "secret"));
        return 1;
    }
    if (!cli_str(body, "class")[0] || !isatty(STDERR_FILENO) ||
        cli_admin_path(path, sizeof path, "class", "/v1/classes/",
                       cli_str(body, "class"), "") < 0 ||
        cli_admin_call(a, "GET", path, NULL, 0, &cls) < 0) {
        cv_clear_error();       /* the create itself will say what is wrong */
        return 0;
    }
    if (cli_str(cls, "secret")[0] || cli_str(cls, "secretTemplate")[0]) {
        snprintf(label, len, "deriving a key for the secret of class %s",
                 cli_str(body, "class"));
        slow = 1;
    }
    json_object_put(cls);
    return slow;
}

int cli_volume_make(struct cli_args *a, json_object *body)
{
    json_object *out = NULL;
    struct progress prog;
    char label[CLI_NAME_LABEL];
    int r, kdf;

    kdf = derives_key(&a->admin, body, label, sizeof label);
    if (kdf) {
        progress_start(&prog, label, 0);
        progress_tick(&prog);
    }
    r = cli_admin_call_json(&a->admin, "POST", "/v1/volumes", body, &out);
    if (kdf)
        progress_end(&prog, r == 0);
    json_object_put(body);
    if (r == 0)
        warn_pending(&a->admin, out);
    return cli_admin_finish(&a->admin, r, out, cli_print_volume);
}

int cmd_volume_create(struct cli_args *a)
{
    json_object *body = json_object_new_object();
    int r;

    r = parse_create(a, body);
    if (r >= 0) {
        json_object_put(body);
        return r;
    }
    return cli_volume_make(a, body);
}

/* Who is connected: "-", "uid:0", "cn:a,uid:0". */
static void clients_words(json_object *v, char *buf, size_t len)
{
    json_object *conns = NULL;
    size_t i, n, at = 0;

    json_object_object_get_ex(v, "connections", &conns);
    n = conns ? json_object_array_length(conns) : 0;
    snprintf(buf, len, "-");
    for (i = 0; i < n && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? "," : "",
                               who(json_object_array_get_idx(conns, i)));
}

struct widths {
    int name, secret, clients;
};

static void list_widths(json_object *out, struct widths *w)
{
    size_t i, n = json_object_array_length(out);
    char s[256];
    int l;

    *w = (struct widths){ 4, 6, 9 };
    for (i = 0; i < n; i++) {
        json_object *v = json_object_array_get_idx(out, i);
        l = (int)strlen(cli_str(v, "name"));
        w->name = l > w->name ? l : w->name;
        l = cli_bool(v, "encrypted") && !cli_str(v, "secret")[0] ?
            (int)strlen("(cluster KEK)") : (int)strlen(cli_str(v, "secret"));
        w->secret = l > w->secret ? l : w->secret;
        clients_words(v, s, sizeof s);
        l = (int)strlen(s);
        w->clients = l > w->clients ? l : w->clients;
    }
}

static void print_list(json_object *out)
{
    size_t i, n = json_object_array_length(out);
    char sz[32], al[32], cipher[32], clients[256];
    struct widths w;

    list_widths(out, &w);
    printf("%-*s  %10s  %10s  %-9s  %-10s  %-*s  %-9s  %-*s  %s\n", w.name,
           "NAME", "SIZE", "ALLOCATED", "TYPE", "ENCRYPTION", w.secret,
           "SECRET", "STATE", w.clients, "CONNECTED", "IN USE");
    for (i = 0; i < n; i++) {
        json_object *v = json_object_array_get_idx(out, i), *alloc = NULL;
        int enc = cli_bool(v, "encrypted");
        const char *secret = cli_str(v, "secret");

        snprintf(cipher, sizeof cipher, "AES-%lld", cli_int(v, "keyBits") / 2);
        cv_format_size((uint64_t)cli_int(v, "size"), sz, sizeof sz);
        json_object_object_get_ex(v, "allocated", &alloc);
        if (alloc)
            cv_format_size((uint64_t)cli_int(v, "allocated"), al, sizeof al);
        else
            snprintf(al, sizeof al, "-");
        clients_words(v, clients, sizeof clients);
        printf("%-*s  %10s  %10s  %-9s  %-10s  %-*s  %-9s  %-*s  %s\n",
               w.name, cli_str(v, "name"), sz, al, cli_str(v, "type"),
               enc ? cipher : "NONE", w.secret,
               !enc ? "-" : secret[0] ? secret : "(cluster KEK)",
               cli_str(v, "state"), w.clients, clients,
               cli_bool(v, "inUse") ? "yes" : "no");
    }
}

int cmd_volume_list(struct cli_args *a)
{
    return cli_admin_get(a, "/v1/volumes", print_list);
}

int cmd_volume_info(struct cli_args *a)
{
    return cli_admin_call_on_name(a, "GET", "/v1/volumes/", cli_print_volume);
}

static void print_resized(json_object *v)
{
    long long older = cli_int(v, "clientsKeepOldSize");
    char a[32];

    printf("volume %s: size %lld (%s)\n", cli_str(v, "name"),
           cli_int(v, "size"), cv_format_size((uint64_t)cli_int(v, "size"),
                                              a, sizeof a));
    if (older > 0)
        printf("%lld connected client%s keep%s the old size until %s "
               "reconnect%s\n", older, older == 1 ? "" : "s",
               older == 1 ? "s" : "", older == 1 ? "it" : "they",
               older == 1 ? "s" : "");
}

/* POST prefix NAME suffix with body, then print. */
static int post_on_name(struct cli_args *a, const char *suffix,
                        json_object *body, void (*print)(json_object *))
{
    json_object *out = NULL;
    char path[256];
    int r;

    r = cli_admin_path(path, sizeof path, "volume", "/v1/volumes/", a->arg[0],
                       suffix);
    if (r == 0)
        r = cli_admin_call_json(&a->admin, "POST", path, body, &out);
    json_object_put(body);
    return cli_admin_finish(&a->admin, r, out, print);
}

int cmd_volume_resize(struct cli_args *a)
{
    json_object *body;
    uint64_t size;

    if (cli_size_value(a, "size", VOLUME_MIN, VOLUME_MAX, &size))
        return EXIT_USAGE;
    body = json_object_new_object();
    json_object_object_add(body, "size", json_object_new_int64((int64_t)size));
    if (cli_flag(a, "allow-shrink"))
        json_object_object_add(body, "allowShrink", json_object_new_boolean(1));
    return post_on_name(a, "/resize", body, print_resized);
}

static void print_rekeyed(json_object *v)
{
    printf("volume %s: now unlocked by secret %s\n", cli_str(v, "name"),
           cli_str(v, "secret"));
}

int cmd_volume_rekey(struct cli_args *a)
{
    json_object *body = json_object_new_object(), *out = NULL;
    const char *secret = cli_value(a, "secret");
    struct progress prog;
    char path[256], label[CLI_NAME_LABEL];
    int r;

    r = cli_admin_path(path, sizeof path, "volume", "/v1/volumes/", a->arg[0],
                       "/rekey");
    if (r < 0) {
        json_object_put(body);
        return cli_fail(r);
    }
    json_object_object_add(body, "secret", json_object_new_string(secret));
    /* The new keyslot gets the daemon's (slow) key derivation. */
    snprintf(label, sizeof label, "deriving a key for secret %s", secret);
    progress_start(&prog, label, 0);
    progress_tick(&prog);
    r = cli_admin_call_json(&a->admin, "POST", path, body, &out);
    progress_end(&prog, r == 0);
    json_object_put(body);
    return cli_admin_finish(&a->admin, r, out, print_rekeyed);
}

static void print_deleted(json_object *v)
{
    printf("volume %s deleted\n", cli_str(v, "name"));
}

int cmd_volume_delete(struct cli_args *a)
{
    return cli_admin_call_on_name(a, "DELETE", "/v1/volumes/", print_deleted);
}
