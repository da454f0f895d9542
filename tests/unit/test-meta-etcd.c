/* The metadata store on etcd (daemon/meta/etcd/), against a real etcd that
 * tests/meta-etcd.sh starts: ETCD_ENDPOINTS, ETCD_TLS_DIR.  That script
 * also serves requests to stop, restart or kill members over two FIFOs
 * (ETCD_CTL_REQ, ETCD_CTL_ACK), so that one open store can be seen losing
 * etcd and getting it back.
 *
 *   test-meta-etcd single    one member: records, invariants, races,
 *                            leases, locks, replica sets, attach
 *                            records, watch, audit, unreachable
 *   test-meta-etcd cluster   three members: one killed, the store answers
 *                            through the next endpoint
 *
 * Each test works under a prefix of its own (/t/NAME-PID/), so they do not
 * see each other's records; the canary test leaves its secret under
 * /cryptvol-canary/ for the script to look for in an etcdctl dump. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/secmem.h"
#include "keys/nodekey.h"
#include "meta/meta.h"

#define CANARY "cvd-canary-5f1c0e2a9b7d4386"

static struct cvd_meta *open_at(const char *prefix, const char *endpoints)
{
    struct cvd_etcd_config cfg = {
        .endpoints = endpoints ? endpoints : getenv("ETCD_ENDPOINTS"),
        .tls_dir = getenv("ETCD_TLS_DIR"),
        .prefix = prefix,
        .timeout_ms = 3000,
    };
    struct cvd_meta *m = NULL;
    int r = cvd_meta_open_etcd(&cfg, &m);

    if (r < 0)
        fail_msg("open %s: %s", prefix, cv_last_error());
    return m;
}

static int setup(void **state)
{
    char prefix[128];
    static unsigned n;

    snprintf(prefix, sizeof prefix, "/t/%u-%d/", n++, (int)getpid());
    *state = open_at(prefix, NULL);
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    cvd_meta_close(*state);
    return 0;
}

/* Asks tests/meta-etcd.sh to do cmd to etcd ("stop", "restart", "kill 1",
 * "restart 1") and waits until it is done. */
static void ctl(const char *cmd)
{
    const char *req = getenv("ETCD_CTL_REQ"), *ack = getenv("ETCD_CTL_ACK");
    char line[64] = "";
    FILE *w, *r;

    if (!req || !ack)
        fail_msg("ETCD_CTL_REQ/ETCD_CTL_ACK not set (run tests/meta-etcd.sh)");
    w = fopen(req, "w");
    assert_non_null(w);
    fprintf(w, "%s\n", cmd);
    fclose(w);
    r = fopen(ack, "r");
    assert_non_null(r);
    if (!fgets(line, sizeof line, r))
        line[0] = '\0';
    fclose(r);
    if (strncmp(line, "ok", 2))
        fail_msg("etcd control \"%s\": %s", cmd, line);
}

static struct cvd_volume_rec volume(const char *name, const char *secret)
{
    struct cvd_volume_rec v;

    memset(&v, 0, sizeof v);
    snprintf(v.name, sizeof v.name, "%s", name);
    snprintf(v.uuid, sizeof v.uuid, "uuid-%s", name);
    v.size = 1 << 20;
    snprintf(v.type, sizeof v.type, "luks2");
    snprintf(v.cipher, sizeof v.cipher, "aes-xts-plain64");
    v.key_bits = 512;
    v.sector_size = 4096;
    v.data_offset = 16 << 20;
    snprintf(v.secret, sizeof v.secret, "%s", secret ? secret : "");
    snprintf(v.path, sizeof v.path, "/data/volumes/%s", name);
    snprintf(v.state, sizeof v.state, CVD_VOL_READY);
    v.created = 1700000000;
    return v;
}

static struct cvd_secret_rec secret(const char *name, const char *owner)
{
    static unsigned char sealed[] = { 1, 2, 3, 0, 255, 7 };
    struct cvd_secret_rec s;

    memset(&s, 0, sizeof s);
    snprintf(s.name, sizeof s.name, "%s", name);
    snprintf(s.owner, sizeof s.owner, "%s", owner ? owner : "");
    s.created = 1700000001;
    s.sealed = sealed;
    s.sealed_len = sizeof sealed;
    return s;
}

static struct cvd_class_rec class(const char *name, const char *secret)
{
    struct cvd_class_rec c;

    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "%s", name);
    c.encrypted = 1;
    snprintf(c.secret, sizeof c.secret, "%s", secret);
    snprintf(c.secret_template, sizeof c.secret_template, "${volume.name}-k");
    snprintf(c.type, sizeof c.type, "luks1");
    c.aes_bits = 128;
    c.replicas = 3;
    c.created = 1700000002;
    return c;
}

static struct cvd_kek_rec kek(uint32_t gen, const char *node)
{
    static unsigned char sealed[] = { 9, 8, 7, 6, 5, 4, 3, 2, 1 };
    struct cvd_kek_rec k;

    memset(&k, 0, sizeof k);
    k.gen = gen;
    snprintf(k.node, sizeof k.node, "%s", node);
    snprintf(k.protection, sizeof k.protection, "software");
    k.created = 1700000003 + gen;
    k.sealed = sealed;
    k.sealed_len = sizeof sealed;
    return k;
}

static struct cvd_node_rec node(const char *name, enum cvd_node_state st)
{
    struct cvd_node_rec n;

    memset(&n, 0, sizeof n);
    snprintf(n.name, sizeof n.name, "%s", name);
    snprintf(n.address, sizeof n.address, "127.0.0.1%s:7400", name + 1);
    n.state = st;
    n.added = 1700000010;
    n.joined = st == CVD_NODE_JOINING ? 0 : 1700000011;
    return n;
}

#define assert_error_has(text) do {                                         \
        if (!strstr(cv_last_error(), (text)))                               \
            fail_msg("error \"%s\" does not say \"%s\"", cv_last_error(),   \
                     (text));                                               \
    } while (0)

/* ---- records ---------------------------------------------------------- */

/* Every field of every record comes back as it went in, with a revision. */
static void records_round_trip(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_volume_rec v = volume("v1", "s1"), gv;
    struct cvd_secret_rec s = secret("s1", "v1"), gs;
    struct cvd_class_rec c = class("c1", "s1"), gc;
    struct cvd_cluster_rec cl, gcl, none;
    struct cvd_kek_rec k = kek(7, "n1"), gk;
    struct cvd_node_rec self = node("n1", CVD_NODE_MEMBER), gn;
    struct cvd_secret_rec *sl;
    struct cvd_class_rec *cls;
    size_t n;

    assert_int_equal(o->class_add(m, &c), 0);
    snprintf(v.class_name, sizeof v.class_name, "c1");
    snprintf(v.wait_secret, sizeof v.wait_secret, "s-next");
    snprintf(v.parent, sizeof v.parent, "base@snap1");
    snprintf(v.node, sizeof v.node, "n1");
    v.kek_gen = 7;
    v.size = (uint64_t)5 << 40;
    v.data_offset = 32 << 20;
    assert_int_equal(o->volume_add(m, &v, &s), 0);
    assert_int_equal(o->volume_get(m, "v1", &gv), 0);
    assert_true(gv.rev > 0);
    v.rev = gv.rev;
    assert_memory_equal(&gv, &v, sizeof v);

    assert_int_equal(o->secret_get(m, "s1", &gs), 0);
    assert_string_equal(gs.name, "s1");
    assert_string_equal(gs.owner, "v1");
    assert_int_equal(gs.created, s.created);
    assert_int_equal(gs.sealed_len, s.sealed_len);
    assert_memory_equal(gs.sealed, s.sealed, s.sealed_len);
    assert_true(gs.rev > 0);
    cvd_secret_rec_free(&gs);
    assert_int_equal(o->secret_list(m, &sl, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(sl[0].owner, "v1");
    assert_null(sl[0].sealed);
    free(sl);

    assert_int_equal(o->class_get(m, "c1", &gc), 0);
    assert_true(gc.rev > 0);
    c.rev = gc.rev;
    assert_memory_equal(&gc, &c, sizeof c);
    assert_int_equal(o->class_list(m, &cls, &n), 0);
    assert_int_equal(n, 1);
    free(cls);

    /* No cluster record yet: Disabled. */
    assert_int_equal(o->cluster_get(m, &none), 0);
    assert_string_equal(none.encryption, CVD_ENC_DISABLED);
    assert_string_equal(none.rotation, CVD_ROT_NONE);
    assert_int_equal(none.rev, 0);
    memset(&cl, 0, sizeof cl);
    snprintf(cl.id, sizeof cl.id, "0f0e0d0c-aaaa-bbbb-cccc-000011112222");
    snprintf(cl.encryption, sizeof cl.encryption, CVD_ENC_ENABLED);
    snprintf(cl.protection, sizeof cl.protection, "tpm");
    cl.current_gen = 7;
    snprintf(cl.rotation, sizeof cl.rotation, CVD_ROT_ENCRYPT);
    cl.target_gen = 8;
    cl.rotation_started = 1700000100;
    cl.rotation_finished = 1700000050;
    snprintf(cl.rotation_node, sizeof cl.rotation_node, "n1");
    assert_int_equal(o->found(m, &cl, &self, &k), 0);
    assert_int_equal(o->cluster_get(m, &gcl), 0);
    assert_true(gcl.rev > 0);
    cl.rev = gcl.rev;
    assert_memory_equal(&gcl, &cl, sizeof cl);

    assert_int_equal(o->node_get(m, "n1", &gn), 0);
    assert_true(gn.rev > 0);
    self.rev = gn.rev;
    assert_memory_equal(&gn, &self, sizeof self);
    assert_int_equal(o->sealkey_get(m, "n1", &gk), 0);
    assert_int_equal(gk.gen, 0);
    assert_string_equal(gk.node, "n1");
    assert_string_equal(gk.protection, "software");
    assert_int_equal(gk.created, k.created);
    assert_int_equal(gk.sealed_len, k.sealed_len);
    assert_memory_equal(gk.sealed, k.sealed, k.sealed_len);
    cvd_kek_rec_free(&gk);

    assert_int_equal(o->kek_put(m, &k), 0);
    assert_int_equal(o->kek_get(m, 7, "n1", &gk), 0);
    assert_int_equal(gk.gen, 7);
    assert_string_equal(gk.node, "n1");
    assert_string_equal(gk.protection, "software");
    assert_int_equal(gk.created, k.created);
    assert_memory_equal(gk.sealed, k.sealed, k.sealed_len);
    cvd_kek_rec_free(&gk);
    assert_int_equal(o->kek_get(m, 8, "n1", &gk), -ENOENT);
    assert_error_has("KEK generation 8");
}

static void access_lists(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_volume_rec v = volume("v1", NULL);
    struct cvd_class_rec c = class("c1", "");
    struct cvd_access_rec set[3] = {
        { "cn:zed", 1 }, { "cn:alice", 1 }, { "cn:bob", 0 },
    }, *got;
    const char *del[] = { "cn:zed" };
    size_t n;

    assert_int_equal(o->access_list(m, CVD_ACCESS_VOLUME, "v1", &got, &n),
                     -ENOENT);
    assert_error_has("volume v1: no such volume");
    assert_int_equal(o->volume_add(m, &v, NULL), 0);
    assert_int_equal(o->class_add(m, &c), 0);
    assert_int_equal(o->access_edit(m, CVD_ACCESS_VOLUME, "v1", 0, set, 3,
                                    NULL, 0), 0);
    assert_int_equal(o->access_list(m, CVD_ACCESS_VOLUME, "v1", &got, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(got[0].identity, "cn:alice");
    assert_string_equal(got[1].identity, "cn:bob");
    assert_int_equal(got[1].allow, 0);
    assert_string_equal(got[2].identity, "cn:zed");
    free(got);
    /* bob allowed now, zed gone, in one edit. */
    set[2].allow = 1;
    assert_int_equal(o->access_edit(m, CVD_ACCESS_VOLUME, "v1", 0, &set[2], 1,
                                    del, 1), 0);
    assert_int_equal(o->access_list(m, CVD_ACCESS_VOLUME, "v1", &got, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(got[1].allow, 1);
    free(got);
    assert_int_equal(o->access_edit(m, CVD_ACCESS_CLASS, "c1", 1, set, 1,
                                    NULL, 0), 0);
    assert_int_equal(o->access_list(m, CVD_ACCESS_CLASS, "c1", &got, &n), 0);
    assert_int_equal(n, 1);
    free(got);
    /* Removed with the volume: a new volume of that name starts empty. */
    assert_int_equal(o->volume_remove(m, "v1"), 0);
    assert_int_equal(o->volume_add(m, &v, NULL), 0);
    assert_int_equal(o->access_list(m, CVD_ACCESS_VOLUME, "v1", &got, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(o->access_edit(m, CVD_ACCESS_CLASS, "nope", 0, set, 1,
                                    NULL, 0), -ENOENT);
}

static void unique_names(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_volume_rec v = volume("v1", NULL), w = volume("v2", "s1");
    struct cvd_secret_rec s = secret("s1", NULL);
    struct cvd_class_rec c = class("c1", "");
    struct cvd_node_rec n2 = node("n2", CVD_NODE_JOINING);

    assert_int_equal(o->volume_add(m, &v, NULL), 0);
    assert_int_equal(o->volume_add(m, &v, NULL), -EEXIST);
    assert_string_equal(cv_last_error(), "volume v1: already exists");
    assert_int_equal(o->secret_add(m, &s), 0);
    assert_int_equal(o->secret_add(m, &s), -EEXIST);
    assert_string_equal(cv_last_error(), "secret s1: already exists");
    /* A volume with its own secret whose name is taken: neither added. */
    assert_int_equal(o->volume_add(m, &w, &s), -EEXIST);
    assert_string_equal(cv_last_error(), "secret s1: already exists");
    assert_int_equal(o->volume_get(m, "v2", &w), -ENOENT);
    assert_int_equal(o->class_add(m, &c), 0);
    assert_int_equal(o->class_add(m, &c), -EEXIST);
    assert_string_equal(cv_last_error(), "class c1: already exists");
    assert_int_equal(o->node_add(m, &n2), 0);
    assert_int_equal(o->node_add(m, &n2), -EEXIST);
    assert_error_has("node n2: already exists");
    /* A name that would leave its directory. */
    assert_int_equal(o->volume_get(m, "a/b", &w), -EINVAL);
}

static void volume_needs_secret_and_class(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_volume_rec v = volume("v1", "missing"), got;
    struct cvd_secret_rec s = secret("s1", NULL);

    assert_int_equal(o->volume_add(m, &v, NULL), -ENOENT);
    assert_string_equal(cv_last_error(),
                        "volume v1: secret \"missing\" does not exist");
    assert_int_equal(o->secret_add(m, &s), 0);
    v = volume("v1", "s1");
    snprintf(v.class_name, sizeof v.class_name, "gold");
    assert_int_equal(o->volume_add(m, &v, NULL), -ENOENT);
    assert_string_equal(cv_last_error(), "volume v1: class gold does not exist");
    assert_int_equal(o->volume_get(m, "v1", &got), -ENOENT);
}

static void in_use_refused(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_volume_rec a = volume("a", "s1"), b = volume("b", NULL);
    struct cvd_secret_rec s1 = secret("s1", NULL), s2 = secret("s2", NULL);
    struct cvd_class_rec c = class("c1", "");
    char used_by[CVD_NAME_MAX + 1];

    assert_int_equal(o->secret_add(m, &s1), 0);
    assert_int_equal(o->secret_add(m, &s2), 0);
    assert_int_equal(o->class_add(m, &c), 0);
    snprintf(a.class_name, sizeof a.class_name, "c1");
    snprintf(b.wait_secret, sizeof b.wait_secret, "s2");
    snprintf(b.state, sizeof b.state, CVD_VOL_PENDING);
    assert_int_equal(o->volume_add(m, &a, NULL), 0);
    assert_int_equal(o->volume_add(m, &b, NULL), 0);
    assert_int_equal(o->secret_remove(m, "s1", used_by), -EBUSY);
    assert_string_equal(used_by, "a");
    assert_string_equal(cv_last_error(), "secret s1: used by volume a");
    /* A volume waiting for a secret uses it too. */
    assert_int_equal(o->secret_remove(m, "s2", used_by), -EBUSY);
    assert_string_equal(used_by, "b");
    assert_int_equal(o->class_remove(m, "c1", used_by), -EBUSY);
    assert_string_equal(used_by, "a");
    assert_string_equal(cv_last_error(), "class c1: used by volume a");
    assert_int_equal(o->volume_remove(m, "a"), 0);
    assert_int_equal(o->secret_remove(m, "s1", used_by), 0);
    assert_int_equal(o->class_remove(m, "c1", used_by), 0);
    assert_int_equal(o->secret_remove(m, "s1", used_by), -ENOENT);
    assert_string_equal(cv_last_error(), "secret s1: no such secret");
    assert_int_equal(o->class_remove(m, "c1", used_by), -ENOENT);
}

/* volume_remove takes the secrets the volume owns, unless another volume
 * uses one; secrets it does not own stay. */
static void owned_secret_removed(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_volume_rec a = volume("a", "a-key"), b = volume("b", "b-key");
    struct cvd_volume_rec c = volume("c", "b-key");
    struct cvd_secret_rec ak = secret("a-key", "a"), bk = secret("b-key", "b");
    struct cvd_secret_rec shared = secret("shared", NULL), got;
    struct cvd_volume_rec d = volume("d", "shared");

    assert_int_equal(o->volume_add(m, &a, &ak), 0);
    assert_int_equal(o->volume_add(m, &b, &bk), 0);
    assert_int_equal(o->volume_add(m, &c, NULL), 0);
    assert_int_equal(o->secret_add(m, &shared), 0);
    assert_int_equal(o->volume_add(m, &d, NULL), 0);
    assert_int_equal(o->volume_remove(m, "a"), 0);
    assert_int_equal(o->secret_get(m, "a-key", &got), -ENOENT);
    /* b's key is c's too: kept. */
    assert_int_equal(o->volume_remove(m, "b"), 0);
    assert_int_equal(o->secret_get(m, "b-key", &got), 0);
    cvd_secret_rec_free(&got);
    assert_int_equal(o->volume_remove(m, "d"), 0);
    assert_int_equal(o->secret_get(m, "shared", &got), 0);
    cvd_secret_rec_free(&got);
    assert_int_equal(o->volume_remove(m, "d"), -ENOENT);
    assert_string_equal(cv_last_error(), "volume d: no such volume");
}

/* A record read at one revision cannot overwrite a newer one. */
static void stale_revision_refused(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_volume_rec v = volume("v1", NULL), old, now;
    struct cvd_secret_rec s = secret("s1", NULL), sold, sold2;
    struct cvd_node_rec n = node("n2", CVD_NODE_JOINING), nold, nnow;

    assert_int_equal(o->volume_add(m, &v, NULL), 0);
    assert_int_equal(o->volume_get(m, "v1", &old), 0);
    now = old;
    now.size = 2 << 20;
    snprintf(now.state, sizeof now.state, CVD_VOL_GROWING);
    assert_int_equal(o->volume_update(m, &now, CVD_VOL_READY), 0);
    /* The new revision came back: the same record goes on (a grow's two
     * steps). */
    assert_true(now.rev > old.rev);
    snprintf(now.state, sizeof now.state, CVD_VOL_READY);
    assert_int_equal(o->volume_update(m, &now, CVD_VOL_GROWING), 0);
    old.size = 3 << 20;
    assert_int_equal(o->volume_update(m, &old, CVD_VOL_READY), -EBUSY);
    assert_error_has("volume v1: changed meanwhile");
    assert_int_equal(o->volume_get(m, "v1", &now), 0);
    assert_int_equal(now.size, 2 << 20);
    /* Without a revision, the state is what is compared. */
    old.rev = 0;
    assert_int_equal(o->volume_update(m, &old, CVD_VOL_READY), 0);
    assert_int_equal(o->volume_update(m, &old, CVD_VOL_RESIZING), -EBUSY);
    assert_string_equal(cv_last_error(), "volume v1: is ready (another "
                        "request is working on it)");
    assert_int_equal(o->volume_get(m, "v1", &now), 0);
    assert_int_equal(now.size, 3 << 20);

    assert_int_equal(o->secret_add(m, &s), 0);
    assert_int_equal(o->secret_get(m, "s1", &sold), 0);
    sold2 = sold;
    assert_int_equal(o->secret_update(m, &sold), 0);
    assert_int_equal(o->secret_update(m, &sold), 0);
    assert_int_equal(o->secret_update(m, &sold2), -EBUSY);
    assert_error_has("secret s1: changed meanwhile");
    cvd_secret_rec_free(&sold);

    assert_int_equal(o->node_add(m, &n), 0);
    assert_int_equal(o->node_get(m, "n2", &nold), 0);
    nnow = nold;
    nnow.state = CVD_NODE_MEMBER;
    nnow.joined = 1700000999;
    assert_int_equal(o->node_update(m, &nnow), 0);
    nnow.joined++;
    assert_int_equal(o->node_update(m, &nnow), 0);
    nnow.joined--;
    assert_int_equal(o->node_update(m, &nnow), 0);
    nold.state = CVD_NODE_REMOVED;
    assert_int_equal(o->node_update(m, &nold), -EBUSY);
    assert_error_has("node n2: changed meanwhile");
    assert_int_equal(o->node_get(m, "n2", &nnow), 0);
    assert_int_equal(nnow.state, CVD_NODE_MEMBER);
    assert_int_equal(nnow.joined, 1700000999);
}

/* A secret removed while volumes that use it are being added: the remove
 * reads the volumes, finds none using it, and deletes it only if no
 * volume changed since that read; else it reads again.  One thread adds
 * a volume using the secret, checks the secret is still there, removes
 * the volume, and again; the other removes the secret until it may.
 * Whatever the order, a volume that was added holds a secret that
 * exists.  Each round ends with the secret gone (the next add refused). */
#define RACE_ROUNDS 20
#define RACE_ADDS 500

struct race {
    struct cvd_meta *m;
    char secret[32];
    int round;
    int bad;                    /* a failure, said in why */
    char why[256];
};

static void *race_adder(void *arg)
{
    struct race *x = arg;
    const struct cvd_meta_ops *o = x->m->ops;
    struct cvd_volume_rec v;
    struct cvd_secret_rec got;
    char name[48];
    int k, r;

    for (k = 0; k < RACE_ADDS; k++) {
        snprintf(name, sizeof name, "race%d-v%d", x->round, k);
        v = volume(name, x->secret);
        r = o->volume_add(x->m, &v, NULL);
        if (r == -ENOENT)
            return NULL;        /* the secret went first: refused */
        if (r == 0) {
            r = o->secret_get(x->m, x->secret, &got);
            if (r == 0)
                cvd_secret_rec_free(&got);
            else if (r == -ENOENT) {
                snprintf(x->why, sizeof x->why, "round %d: volume %s was "
                         "added with secret %s, which was removed after",
                         x->round, name, x->secret);
                x->bad = 1;
                return NULL;
            }
        }
        if (r == 0)
            r = o->volume_remove(x->m, name);
        if (r < 0) {
            snprintf(x->why, sizeof x->why, "round %d: volume %s: %s",
                     x->round, name, cv_last_error());
            x->bad = 1;
            return NULL;
        }
    }
    return NULL;
}

static void *race_remover(void *arg)
{
    struct race *x = arg;
    char used_by[CVD_NAME_MAX + 1];
    int r;

    do
        r = x->m->ops->secret_remove(x->m, x->secret, used_by);
    while (r == -EBUSY);
    if (r < 0) {
        snprintf(x->why, sizeof x->why, "round %d: secret_remove %s: %s",
                 x->round, x->secret, cv_last_error());
        x->bad = 1;
    }
    return NULL;
}

static void remove_in_use_race(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_volume_rec *vs;
    struct cvd_secret_rec s, got;
    pthread_t add, del;
    size_t n, i;
    int round;

    for (round = 0; round < RACE_ROUNDS; round++) {
        struct race x = { .m = m, .round = round };

        snprintf(x.secret, sizeof x.secret, "race%d-s", round);
        s = secret(x.secret, NULL);
        assert_int_equal(o->secret_add(m, &s), 0);
        assert_int_equal(pthread_create(&add, NULL, race_adder, &x), 0);
        assert_int_equal(pthread_create(&del, NULL, race_remover, &x), 0);
        assert_int_equal(pthread_join(add, NULL), 0);
        assert_int_equal(pthread_join(del, NULL), 0);
        if (x.bad)
            fail_msg("%s", x.why);
        assert_int_equal(o->secret_get(m, x.secret, &got), -ENOENT);
    }
    /* And in the store as it is now: every volume's secret exists. */
    assert_int_equal(o->volume_list(m, &vs, &n), 0);
    for (i = 0; i < n; i++) {
        if (!vs[i].secret[0])
            continue;
        if (o->secret_get(m, vs[i].secret, &got) < 0)
            fail_msg("volume %s uses secret %s, which does not exist",
                     vs[i].name, vs[i].secret);
        cvd_secret_rec_free(&got);
    }
    free(vs);
}

#define RMW_THREADS 4
#define RMW_EACH 15

/* Each thread adds 1 to the size RMW_EACH times, reading the record and
 * writing it back with its revision, again when someone else won. */
static void *rmw(void *arg)
{
    struct cvd_meta *m = arg;
    struct cvd_volume_rec v;
    int i, r;

    for (i = 0; i < RMW_EACH; i++) {
        do {
            r = m->ops->volume_get(m, "v1", &v);
            if (r == 0) {
                v.size++;
                r = m->ops->volume_update(m, &v, CVD_VOL_READY);
            }
        } while (r == -EBUSY);
        if (r < 0)
            return (void *)(intptr_t)r;
    }
    return NULL;
}

static void read_modify_write_loses_nothing(void **state)
{
    struct cvd_meta *m = *state;
    struct cvd_volume_rec v = volume("v1", NULL);
    pthread_t t[RMW_THREADS];
    void *ret;
    int i;

    v.size = 1000;
    assert_int_equal(m->ops->volume_add(m, &v, NULL), 0);
    for (i = 0; i < RMW_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, rmw, m), 0);
    for (i = 0; i < RMW_THREADS; i++) {
        assert_int_equal(pthread_join(t[i], &ret), 0);
        assert_null(ret);
    }
    assert_int_equal(m->ops->volume_get(m, "v1", &v), 0);
    assert_int_equal(v.size, 1000 + RMW_THREADS * RMW_EACH);
}

static void cluster_update_expects(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_cluster_rec cur, next, stale;
    struct cvd_kek_rec k = kek(1, "n1"), got;

    assert_int_equal(o->cluster_get(m, &cur), 0);
    next = cur;
    snprintf(next.id, sizeof next.id, "c-1");
    snprintf(next.encryption, sizeof next.encryption, CVD_ENC_ENABLED);
    next.current_gen = 1;
    assert_int_equal(o->cluster_update(m, &next, &cur, &k), 0);
    assert_int_equal(o->kek_get(m, 1, "n1", &got), 0);
    cvd_kek_rec_free(&got);
    /* The one before is no longer what is stored. */
    stale = next;
    next.current_gen = 2;
    assert_int_equal(o->cluster_update(m, &next, &cur, NULL), -EBUSY);
    assert_error_has("cluster: its state changed meanwhile (now encryption "
                     "Enabled");
    /* Chained: the record just written is the next expect. */
    snprintf(next.rotation, sizeof next.rotation, CVD_ROT_DISTRIBUTE);
    next.target_gen = 2;
    assert_int_equal(o->cluster_update(m, &next, &stale, NULL), 0);
    /* A KEK generation is stored once, with the state that names it. */
    stale = next;
    next.current_gen = 3;
    assert_int_equal(o->cluster_update(m, &next, &stale, &k), -EEXIST);
    assert_error_has("KEK generation 1 for node n1: already stored");
    assert_int_equal(o->cluster_get(m, &cur), 0);
    assert_int_equal(cur.current_gen, 2);
    assert_string_equal(cur.rotation, CVD_ROT_DISTRIBUTE);
}

static void keks_and_prune(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_volume_rec v = volume("v1", NULL), got;
    struct cvd_kek_rec k;
    const char *names[140];
    char namebuf[140][16];
    uint32_t *gens;
    size_t n, i;
    uint32_t g;

    for (g = 1; g <= 3; g++) {
        k = kek(g, "n1");
        assert_int_equal(o->kek_put(m, &k), 0);
        k = kek(g, "n2");
        assert_int_equal(o->kek_put(m, &k), 0);
    }
    k = kek(12, "n1");  /* 12 after 3: the keys sort by generation */
    assert_int_equal(o->kek_put(m, &k), 0);
    assert_int_equal(o->kek_list(m, "n1", &gens, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(gens[0], 1);
    assert_int_equal(gens[2], 3);
    assert_int_equal(gens[3], 12);
    free(gens);
    v.kek_gen = 1;
    assert_int_equal(o->volume_add(m, &v, NULL), 0);
    assert_int_equal(o->kek_prune(m, 3), 0);
    assert_int_equal(o->kek_list(m, "n2", &gens, &n), 0);
    assert_int_equal(n, 2);             /* 1 (v1 uses it) and 3 */
    assert_int_equal(gens[0], 1);
    assert_int_equal(gens[1], 3);
    free(gens);

    /* More volumes than one txn takes (etcd's 128 operations). */
    names[0] = "v1";
    for (i = 1; i < 140; i++) {
        snprintf(namebuf[i], sizeof namebuf[i], "w%03zu", i);
        names[i] = namebuf[i];
        v = volume(names[i], NULL);
        v.kek_gen = 1;
        assert_int_equal(o->volume_add(m, &v, NULL), 0);
    }
    assert_int_equal(o->volume_set_kek_gen(m, names, 140, 3), 0);
    assert_int_equal(o->volume_get(m, "w139", &got), 0);
    assert_int_equal(got.kek_gen, 3);
    assert_int_equal(o->volume_get(m, "v1", &got), 0);
    assert_int_equal(got.kek_gen, 3);
    assert_int_equal(o->kek_prune(m, 3), 0);
    assert_int_equal(o->kek_list(m, "n1", &gens, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(gens[0], 3);
    assert_int_equal(gens[1], 12);
    free(gens);
}

static void nodes_and_found(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_cluster_rec c;
    struct cvd_node_rec self = node("n1", CVD_NODE_JOINING), n3, *all, got;
    struct cvd_kek_rec sk = kek(0, "n1"), gk;
    size_t n;

    memset(&c, 0, sizeof c);
    snprintf(c.id, sizeof c.id, "cid-1");
    snprintf(c.encryption, sizeof c.encryption, CVD_ENC_DISABLED);
    snprintf(c.rotation, sizeof c.rotation, CVD_ROT_NONE);
    assert_int_equal(o->found(m, &c, &self, &sk), 0);
    assert_int_equal(o->found(m, &c, &self, &sk), -EEXIST);
    assert_string_equal(cv_last_error(),
                        "cluster: already founded (cluster id cid-1)");
    /* The founder is a member from the start. */
    assert_int_equal(o->node_get(m, "n1", &got), 0);
    assert_int_equal(got.state, CVD_NODE_MEMBER);
    assert_int_equal(got.alive, 0);
    n3 = node("n3", CVD_NODE_JOINING);
    assert_int_equal(o->node_add(m, &n3), 0);
    n3 = node("n2", CVD_NODE_JOINING);
    assert_int_equal(o->node_add(m, &n3), 0);
    assert_int_equal(o->node_list(m, &all, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(all[0].name, "n1");
    assert_string_equal(all[1].name, "n2");
    assert_int_equal(all[1].state, CVD_NODE_JOINING);
    assert_string_equal(all[1].address, "127.0.0.12:7400");
    free(all);
    assert_int_equal(o->node_get(m, "n9", &got), -ENOENT);
    assert_string_equal(cv_last_error(), "node n9: no such node");

    sk = kek(0, "n2");
    sk.created = 42;
    assert_int_equal(o->sealkey_put(m, &sk), 0);
    sk.created = 43;
    assert_int_equal(o->sealkey_put(m, &sk), 0);    /* replaces */
    assert_int_equal(o->sealkey_get(m, "n2", &gk), 0);
    assert_int_equal(gk.created, 43);
    cvd_kek_rec_free(&gk);
    assert_int_equal(o->sealkey_get(m, "n3", &gk), -ENOENT);
    assert_string_equal(cv_last_error(), "seal key: none stored for node n3");
}

/* ---- leases, liveness, locks ------------------------------------------- */
static int alive(struct cvd_meta *m, const char *name)
{
    struct cvd_node_rec n;

    assert_int_equal(m->ops->node_get(m, name, &n), 0);
    return n.alive;
}

static void leases_expire_and_keepalive(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_node_rec a = node("n1", CVD_NODE_MEMBER);
    struct cvd_node_rec b = node("n2", CVD_NODE_MEMBER), got;
    int64_t short_lease, kept;
    int i;

    assert_int_equal(o->node_add(m, &a), 0);
    assert_int_equal(o->node_add(m, &b), 0);
    /* etcd raises a TTL below its minimum (1.5 s here) to it. */
    assert_int_equal(o->lease_grant(m, 1, &short_lease), 0);
    assert_int_equal(o->lease_grant(m, 2, &kept), 0);
    assert_int_equal(o->alive_put(m, "n1", short_lease, "{\"version\":1}"), 0);
    assert_int_equal(o->alive_put(m, "n2", kept, "{\"version\":1}"), 0);
    assert_int_equal(o->node_get(m, "n1", &got), 0);
    assert_int_equal(got.alive, 1);
    assert_true(got.last_seen >= (int64_t)time(NULL) - 5);
    assert_int_equal(o->alive_put(m, "n1", 0, "not json"), -EINVAL);
    /* 4 s: the short one expires, the one kept alive does not. */
    for (i = 0; i < 8; i++) {
        usleep(500 * 1000);
        assert_int_equal(o->lease_keepalive(m, kept), 0);
    }
    assert_int_equal(alive(m, "n1"), 0);
    assert_int_equal(alive(m, "n2"), 1);
    assert_int_equal(o->lease_keepalive(m, short_lease), -ENOENT);
    assert_error_has("expired");
    /* Its last sighting outlives its lease. */
    assert_int_equal(o->node_get(m, "n1", &got), 0);
    assert_true(got.last_seen > 0);
    assert_int_equal(o->alive_put(m, "n1", short_lease, "{}"), -ENOENT);
    assert_int_equal(o->lease_revoke(m, kept), 0);
    assert_int_equal(alive(m, "n2"), 0);
    assert_int_equal(o->lease_revoke(m, kept), -ENOENT);
}

static void locks(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    char held_by[CVD_NAME_MAX + 1];
    int64_t l1, l2;

    assert_int_equal(o->lease_grant(m, 30, &l1), 0);
    assert_int_equal(o->lease_grant(m, 30, &l2), 0);
    assert_int_equal(o->lock_take(m, "rotation", l1, "n1", held_by), 0);
    /* Again by its holder: still its own. */
    assert_int_equal(o->lock_take(m, "rotation", l1, "n1", held_by), 0);
    assert_int_equal(o->lock_take(m, "rotation", l2, "n2", held_by), -EBUSY);
    assert_string_equal(held_by, "n1");
    assert_string_equal(cv_last_error(), "lock rotation: held by n1");
    assert_int_equal(o->lock_release(m, "rotation", l2), -EBUSY);
    assert_error_has("held by n1");
    assert_int_equal(o->lock_release(m, "rotation", l1), 0);
    assert_int_equal(o->lock_take(m, "rotation", l2, "n2", held_by), 0);
    /* The holder's lease gone, the lock is free. */
    assert_int_equal(o->lease_revoke(m, l2), 0);
    assert_int_equal(o->lock_take(m, "rotation", l1, "n1", held_by), 0);
    assert_int_equal(o->lock_release(m, "rotation", l1), 0);
    assert_int_equal(o->lock_release(m, "rotation", l1), 0);  /* not held */
    assert_int_equal(o->lease_revoke(m, l1), 0);
}

/* ---- replica sets and attach records ---------------------------------- */
static struct cvd_replica_set replica_set(const char *vol, unsigned n)
{
    struct cvd_replica_set s;
    unsigned i;

    memset(&s, 0, sizeof s);
    snprintf(s.volume, sizeof s.volume, "%s", vol);
    s.want = n;
    s.min = n - 1;
    s.n = n;
    for (i = 0; i < n; i++) {
        snprintf(s.r[i].node, sizeof s.r[i].node, "n%u", i + 1);
        s.r[i].state = CVD_REPLICA_INSYNC;
        s.r[i].since = 1700000000 + i;
    }
    return s;
}

static void replica_states_named(void **state)
{
    enum cvd_replica_state st;

    (void)state;
    assert_string_equal(cvd_replica_state_name(CVD_REPLICA_INSYNC), "InSync");
    assert_string_equal(cvd_replica_state_name(CVD_REPLICA_OUTOFSYNC),
                        "OutOfSync");
    assert_string_equal(cvd_replica_state_name(CVD_REPLICA_REBUILDING),
                        "Rebuilding");
    assert_string_equal(cvd_replica_state_name(CVD_REPLICA_FAILED), "Failed");
    assert_int_equal(cvd_replica_state_parse("OutOfSync", &st), 0);
    assert_int_equal(st, CVD_REPLICA_OUTOFSYNC);
    assert_int_equal(cvd_replica_state_parse("insync", &st), -EINVAL);
    assert_error_has("not one of InSync");
}

/* Every field round-trips; a put from a stale revision loses (-EBUSY), a
 * second create too (-EEXIST); remove takes the attach record along. */
static void replica_sets_cas(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_replica_set s = replica_set("db1", 3), got, other, *list;
    int64_t first;
    size_t n;

    assert_int_equal(o->replicas_get(m, "db1", &got), -ENOENT);
    assert_error_has("volume db1: no replica set");
    s.shape_gen = 7;
    s.r[2].state = CVD_REPLICA_OUTOFSYNC;
    s.r[2].behind = 3 << 20;
    s.r[2].sync_done = 1 << 20;
    s.r[2].sync_total = 4 << 20;
    snprintf(s.r[2].error, sizeof s.r[2].error, "timed out");
    snprintf(s.last_writer, sizeof s.last_writer, "n2");
    s.clean = 1;
    assert_int_equal(o->replicas_put(m, &s), 0);
    assert_true(s.rev > 0);
    first = s.rev;
    assert_int_equal(o->replicas_get(m, "db1", &got), 0);
    assert_int_equal(got.rev, first);
    assert_string_equal(got.volume, "db1");
    assert_int_equal(got.want, 3);
    assert_int_equal(got.min, 2);
    assert_int_equal(got.shape_gen, 7);
    assert_int_equal(got.n, 3);
    assert_string_equal(got.r[1].node, "n2");
    assert_int_equal(got.r[1].since, 1700000001);
    assert_int_equal(got.r[2].state, CVD_REPLICA_OUTOFSYNC);
    assert_int_equal(got.r[2].behind, 3 << 20);
    assert_int_equal(got.r[2].sync_done, 1 << 20);
    assert_int_equal(got.r[2].sync_total, 4 << 20);
    assert_string_equal(got.r[2].error, "timed out");
    assert_string_equal(got.last_writer, "n2");
    assert_int_equal(got.clean, 1);
    /* Created twice. */
    other = replica_set("db1", 2);
    assert_int_equal(o->replicas_put(m, &other), -EEXIST);
    /* Two writers read revision first: the second loses. */
    other = got;
    got.r[2].state = CVD_REPLICA_INSYNC;
    assert_int_equal(o->replicas_put(m, &got), 0);
    assert_true(got.rev > first);
    other.r[0].state = CVD_REPLICA_FAILED;
    assert_int_equal(o->replicas_put(m, &other), -EBUSY);
    assert_error_has("changed meanwhile");
    assert_int_equal(o->replicas_get(m, "db1", &other), 0);
    assert_int_equal(other.r[0].state, CVD_REPLICA_INSYNC);
    assert_int_equal(other.r[2].state, CVD_REPLICA_INSYNC);
    /* The updated record can be updated again (rev written back). */
    got.min = 1;
    assert_int_equal(o->replicas_put(m, &got), 0);
    s = replica_set("db0", 2);
    assert_int_equal(o->replicas_put(m, &s), 0);
    assert_int_equal(o->replicas_list(m, &list, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].volume, "db0");
    assert_string_equal(list[1].volume, "db1");
    assert_int_equal(list[1].min, 1);
    assert_int_equal(list[1].rev, got.rev);
    free(list);
    assert_int_equal(o->replicas_remove(m, "db0"), 0);
    s = replica_set("db1", 0);
    assert_int_equal(o->replicas_put(m, &s), -EINVAL);
    assert_int_equal(o->replicas_remove(m, "db1"), 0);
    assert_int_equal(o->replicas_get(m, "db1", &got), -ENOENT);
    assert_int_equal(o->replicas_remove(m, "db1"), 0);     /* none: fine */
    /* An update of a removed set. */
    assert_int_equal(o->replicas_put(m, &other), -ENOENT);
}

/* One writer at a time: the second take is refused naming the holder,
 * each take raises the epoch, a release with another epoch or node
 * changes nothing, and the holder's lease going frees the volume. */
static void attach_one_writer(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_replica_set s = replica_set("db1", 3), prev, got;
    struct cvd_attach_rec a;
    uint64_t e1, e2, e3;
    int64_t l1, l2;

    assert_int_equal(o->lease_grant(m, 30, &l1), 0);
    assert_int_equal(o->lease_grant(m, 30, &l2), 0);
    assert_int_equal(o->attach_take(m, "db1", "n1", l1, &e1, NULL), -ENOENT);
    assert_int_equal(o->attach_get(m, "db1", &a), -ENOENT);
    s.epoch = 4;
    s.clean = 1;
    snprintf(s.last_writer, sizeof s.last_writer, "n3");
    assert_int_equal(o->replicas_put(m, &s), 0);
    assert_int_equal(o->attach_take(m, "db1", "n1", l1, &e1, &prev), 0);
    assert_int_equal(e1, 5);
    assert_int_equal(prev.epoch, 4);
    assert_string_equal(prev.last_writer, "n3");
    assert_int_equal(prev.clean, 1);
    assert_int_equal(o->replicas_get(m, "db1", &got), 0);
    assert_int_equal(got.epoch, 5);
    assert_string_equal(got.last_writer, "n1");
    assert_int_equal(got.clean, 0);
    assert_int_equal(o->attach_get(m, "db1", &a), 0);
    assert_string_equal(a.volume, "db1");
    assert_string_equal(a.node, "n1");
    assert_int_equal(a.epoch, 5);
    assert_int_equal(a.lease, l1);
    assert_true(a.since >= (int64_t)time(NULL) - 5);
    /* Taken twice, by another node and by the same one. */
    assert_int_equal(o->attach_take(m, "db1", "n2", l2, &e2, NULL), -EBUSY);
    assert_string_equal(cv_last_error(), "volume db1: attached on node n1 "
                        "(epoch 5)");
    assert_int_equal(o->attach_take(m, "db1", "n1", l1, &e2, NULL), -EBUSY);
    /* Not the holder's epoch, not the holder: nothing happens. */
    assert_int_equal(o->attach_release(m, "db1", "n1", 4, 1), 0);
    assert_int_equal(o->attach_release(m, "db1", "n2", 5, 1), 0);
    assert_int_equal(o->attach_get(m, "db1", &a), 0);
    assert_string_equal(a.node, "n1");
    assert_int_equal(o->replicas_get(m, "db1", &got), 0);
    assert_int_equal(got.clean, 0);
    /* A clean release. */
    assert_int_equal(o->attach_release(m, "db1", "n1", 5, 1), 0);
    assert_int_equal(o->attach_get(m, "db1", &a), -ENOENT);
    assert_int_equal(o->replicas_get(m, "db1", &got), 0);
    assert_int_equal(got.clean, 1);
    assert_int_equal(got.epoch, 5);
    assert_int_equal(o->attach_release(m, "db1", "n1", 5, 1), 0); /* again */
    /* n2 takes it; its node dies (the lease goes): free again, unclean. */
    assert_int_equal(o->attach_take(m, "db1", "n2", l2, &e2, &prev), 0);
    assert_int_equal(e2, 6);
    assert_int_equal(prev.clean, 1);
    assert_int_equal(o->lease_revoke(m, l2), 0);
    assert_int_equal(o->attach_get(m, "db1", &a), -ENOENT);
    assert_int_equal(o->attach_take(m, "db1", "n1", l1, &e3, &prev), 0);
    assert_int_equal(e3, 7);
    assert_string_equal(prev.last_writer, "n2");
    assert_int_equal(prev.clean, 0);
    /* The old writer, back with its stale epoch, releases nothing. */
    assert_int_equal(o->attach_release(m, "db1", "n2", 6, 1), 0);
    assert_int_equal(o->attach_get(m, "db1", &a), 0);
    assert_string_equal(a.node, "n1");
    assert_int_equal(a.epoch, 7);
    /* Nor changes the set: a put guarded by its lease is refused, one
     * guarded by the holder's goes in. */
    assert_int_equal(o->replicas_get(m, "db1", &got), 0);
    got.writer_lease = l2;
    assert_int_equal(o->replicas_put(m, &got), -ESTALE);
    got.writer_lease = l1;
    assert_int_equal(o->replicas_put(m, &got), 0);
    /* A lease that is gone makes no attach record. */
    assert_int_equal(o->replicas_remove(m, "db1"), 0);
    assert_int_equal(o->attach_get(m, "db1", &a), -ENOENT);
    s = replica_set("db2", 2);
    assert_int_equal(o->replicas_put(m, &s), 0);
    assert_int_equal(o->attach_take(m, "db2", "n2", l2, &e2, NULL), -ENOENT);
    assert_error_has("volume db2: attach with lease");
    assert_int_equal(o->replicas_get(m, "db2", &got), 0);
    assert_int_equal(got.epoch, 0);
    assert_int_equal(o->lease_revoke(m, l1), 0);
}

/* Two takers at once: exactly one wins. */
struct taker {
    struct cvd_meta *m;
    const char *node;
    int64_t lease;
    int r;
    uint64_t epoch;
};

static void *take_thread(void *arg)
{
    struct taker *t = arg;

    t->r = t->m->ops->attach_take(t->m, "db1", t->node, t->lease, &t->epoch,
                                  NULL);
    return NULL;
}

static void attach_race_one_wins(void **state)
{
    struct cvd_meta *m = *state;
    struct cvd_replica_set s = replica_set("db1", 2);
    struct taker t[2] = { { m, "n1", 0, 0, 0 }, { m, "n2", 0, 0, 0 } };
    pthread_t th[2];
    int i, round;

    assert_int_equal(m->ops->replicas_put(m, &s), 0);
    assert_int_equal(m->ops->lease_grant(m, 30, &t[0].lease), 0);
    assert_int_equal(m->ops->lease_grant(m, 30, &t[1].lease), 0);
    for (round = 0; round < 5; round++) {
        for (i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&th[i], NULL, take_thread, &t[i]),
                             0);
        for (i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        assert_true((t[0].r == 0) != (t[1].r == 0));
        i = t[0].r == 0 ? 0 : 1;
        assert_int_equal(t[!i].r, -EBUSY);
        assert_int_equal(t[i].epoch, (uint64_t)round + 1);
        assert_int_equal(m->ops->attach_release(m, "db1", t[i].node,
                                                t[i].epoch, 1), 0);
    }
    assert_int_equal(m->ops->lease_revoke(m, t[0].lease), 0);
    assert_int_equal(m->ops->lease_revoke(m, t[1].lease), 0);
}

/* ---- the watch -------------------------------------------------------- */
struct seen {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct { enum cvd_meta_event ev; char name[160]; int deleted; } e[256];
    size_t n;
};

static void on_event(void *arg, enum cvd_meta_event ev, const char *name,
                     int deleted)
{
    struct seen *s = arg;

    pthread_mutex_lock(&s->lock);
    if (s->n < 256) {
        s->e[s->n].ev = ev;
        snprintf(s->e[s->n].name, sizeof s->e[s->n].name, "%s", name);
        s->e[s->n].deleted = deleted;
        s->n++;
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* Waits (10 s at most) for the event, looking from *from on; moves *from
 * past it. */
static void expect_event(struct seen *s, size_t *from, enum cvd_meta_event ev,
                         const char *name, int deleted)
{
    struct timespec until;
    size_t i;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        for (i = *from; i < s->n; i++)
            if (s->e[i].ev == ev && !strcmp(s->e[i].name, name) &&
                s->e[i].deleted == deleted) {
                *from = i + 1;
                pthread_mutex_unlock(&s->lock);
                return;
            }
        if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&s->lock);
    fail_msg("no watch event %d \"%s\" deleted=%d (saw %zu events)", ev, name,
             deleted, s->n);
}

/* Every kind of record is reported; a restart of etcd cuts the stream and
 * the watch comes back by itself, saying RESYNC. */
static void watch_reports_and_resyncs(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    static struct seen s = {
        .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
    };
    struct cvd_volume_rec v = volume("v1", "s1");
    struct cvd_secret_rec sec = secret("s1", "v1");
    struct cvd_class_rec c = class("c1", "");
    struct cvd_cluster_rec cur, next;
    struct cvd_node_rec n2 = node("n2", CVD_NODE_JOINING);
    struct cvd_kek_rec k = kek(4, "n2"), sk = kek(0, "n2");
    char held_by[CVD_NAME_MAX + 1];
    struct cvd_replica_set rs;
    uint64_t epoch;
    int64_t lease;
    size_t at = 0, mark;

    assert_int_equal(o->watch(m, on_event, &s), 0);
    assert_int_equal(o->watch(m, on_event, &s), -EBUSY);
    assert_int_equal(o->volume_add(m, &v, &sec), 0);
    expect_event(&s, &at, CVD_META_EV_SECRET, "s1", 0);
    expect_event(&s, &at, CVD_META_EV_VOLUME, "v1", 0);
    assert_int_equal(o->class_add(m, &c), 0);
    expect_event(&s, &at, CVD_META_EV_CLASS, "c1", 0);
    assert_int_equal(o->cluster_get(m, &cur), 0);
    next = cur;
    snprintf(next.id, sizeof next.id, "c");
    assert_int_equal(o->cluster_update(m, &next, &cur, NULL), 0);
    expect_event(&s, &at, CVD_META_EV_CLUSTER, "", 0);
    assert_int_equal(o->kek_put(m, &k), 0);
    expect_event(&s, &at, CVD_META_EV_KEK, "4/n2", 0);
    assert_int_equal(o->sealkey_put(m, &sk), 0);
    expect_event(&s, &at, CVD_META_EV_SEALKEY, "n2", 0);
    assert_int_equal(o->node_add(m, &n2), 0);
    expect_event(&s, &at, CVD_META_EV_NODE, "n2", 0);
    assert_int_equal(o->lease_grant(m, 30, &lease), 0);
    assert_int_equal(o->alive_put(m, "n2", lease, "{}"), 0);
    expect_event(&s, &at, CVD_META_EV_ALIVE, "n2", 0);
    assert_int_equal(o->lock_take(m, "rotation", lease, "n2", held_by), 0);
    expect_event(&s, &at, CVD_META_EV_LOCK, "rotation", 0);
    rs = replica_set("v1", 2);
    assert_int_equal(o->replicas_put(m, &rs), 0);
    expect_event(&s, &at, CVD_META_EV_REPLICAS, "v1", 0);
    assert_int_equal(o->attach_take(m, "v1", "n2", lease, &epoch, NULL), 0);
    expect_event(&s, &at, CVD_META_EV_ATTACH, "v1", 0);
    assert_int_equal(o->volume_remove(m, "v1"), 0);
    expect_event(&s, &at, CVD_META_EV_SECRET, "s1", 1);
    expect_event(&s, &at, CVD_META_EV_VOLUME, "v1", 1);
    /* The lease's keys go with it. */
    assert_int_equal(o->lease_revoke(m, lease), 0);
    mark = at;
    expect_event(&s, &mark, CVD_META_EV_ATTACH, "v1", 1);
    expect_event(&s, &at, CVD_META_EV_ALIVE, "n2", 1);
    expect_event(&s, &at, CVD_META_EV_LOCK, "rotation", 1);
    at = at > mark ? at : mark;
    assert_int_equal(o->replicas_remove(m, "v1"), 0);
    expect_event(&s, &at, CVD_META_EV_REPLICAS, "v1", 1);

    ctl("stop");
    ctl("restart");
    expect_event(&s, &at, CVD_META_EV_RESYNC, "", 0);
    v = volume("v2", NULL);
    assert_int_equal(o->volume_add(m, &v, NULL), 0);
    expect_event(&s, &at, CVD_META_EV_VOLUME, "v2", 0);
}

/* etcd down: every operation answers -ENOTCONN naming the endpoint, the
 * status says so; etcd back: the same store works again. */
static void unreachable_then_back(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_volume_rec v = volume("v1", NULL), got;
    struct cvd_meta_status st;
    const char *eps = getenv("ETCD_ENDPOINTS");

    assert_int_equal(o->volume_add(m, &v, NULL), 0);
    o->status(m, &st);
    assert_int_equal(st.reachable, 1);
    assert_string_equal(st.endpoint, eps);
    ctl("stop");
    assert_int_equal(o->volume_get(m, "v1", &got), -ENOTCONN);
    assert_error_has("metadata store unreachable: etcd ");
    assert_error_has(eps);
    assert_error_has("Connection refused");
    v = volume("v2", NULL);
    assert_int_equal(o->volume_add(m, &v, NULL), -ENOTCONN);
    o->status(m, &st);
    assert_int_equal(st.reachable, 0);
    assert_non_null(strstr(st.error, eps));
    assert_true(st.since > 0);
    ctl("restart");
    assert_int_equal(o->volume_get(m, "v1", &got), 0);
    assert_int_equal(o->volume_add(m, &v, NULL), 0);
    o->status(m, &st);
    assert_int_equal(st.reachable, 1);
    assert_string_equal(st.error, "");
}

static void open_fails_over_and_refuses(void **state)
{
    struct cvd_meta *m;
    struct cvd_meta_status st;
    struct cvd_etcd_config cfg = {
        .endpoints = "https://127.0.0.1:1", .tls_dir = getenv("ETCD_TLS_DIR"),
    };
    char eps[1024];

    (void)state;
    assert_int_equal(cvd_meta_open_etcd(&cfg, &m), -ENOTCONN);
    assert_null(m);
    assert_string_equal(cv_last_error(), "metadata store unreachable: etcd "
                        "https://127.0.0.1:1: Connection refused");
    cfg.tls_dir = NULL;
    assert_int_equal(cvd_meta_open_etcd(&cfg, &m), -EINVAL);
    assert_error_has("https needs --etcd-tls-dir");
    /* The first endpoint refuses, the second answers and is remembered. */
    snprintf(eps, sizeof eps, "https://127.0.0.1:1,%s",
             getenv("ETCD_ENDPOINTS"));
    m = open_at("/t/failover/", eps);
    m->ops->status(m, &st);
    assert_int_equal(st.reachable, 1);
    assert_string_equal(st.endpoint, getenv("ETCD_ENDPOINTS"));
    cvd_meta_close(m);
}

/* A port that takes connections (the kernel's backlog) and never answers
 * them: an etcd that hangs. */
static int silent_port(int *fd)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof a;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(*fd >= 0);
    assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(*fd, 8), 0);
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

/* An endpoint that does not answer costs its timeout, then the next one
 * answers; alone, it is unreachable, saying it timed out. */
static void hung_endpoint_times_out(void **state)
{
    struct cvd_etcd_config cfg = {
        .tls_dir = getenv("ETCD_TLS_DIR"), .timeout_ms = 800,
    };
    struct cvd_meta_status st;
    struct cvd_meta *m;
    struct timespec t0, t1;
    char eps[1024], one[64];
    int fd, port = silent_port(&fd);
    long ms;

    (void)state;
    snprintf(one, sizeof one, "https://127.0.0.1:%d", port);
    snprintf(eps, sizeof eps, "%s,%s", one, getenv("ETCD_ENDPOINTS"));
    cfg.endpoints = eps;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(cvd_meta_open_etcd(&cfg, &m), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 700 && ms < 3000);
    m->ops->status(m, &st);
    assert_string_equal(st.endpoint, getenv("ETCD_ENDPOINTS"));
    cvd_meta_close(m);
    cfg.endpoints = one;
    assert_int_equal(cvd_meta_open_etcd(&cfg, &m), -ENOTCONN);
    assert_error_has(one);
    assert_error_has("timed out");
    close(fd);
}

static int audit_collect(void *arg, json_object *ev)
{
    json_object *all = arg;

    json_object_array_add(all, json_object_get(ev));
    return 0;
}

static void audit_in_order(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    json_object *all = json_object_new_array(), *ev, *v;
    char line[64];
    int i;

    for (i = 0; i < 6; i++) {
        snprintf(line, sizeof line, "{\"event\":\"test.%d\",\"n\":%d}", i, i);
        assert_int_equal(o->audit_append(m, i % 2 ? "n2" : "n1", line), 0);
    }
    assert_int_equal(o->audit_append(m, "n1", "[1]"), -EINVAL);
    assert_int_equal(o->audit_read(m, 0, audit_collect, all), 0);
    assert_int_equal(json_object_array_length(all), 6);
    for (i = 0; i < 6; i++) {
        ev = json_object_array_get_idx(all, i);
        assert_true(json_object_object_get_ex(ev, "n", &v));
        assert_int_equal(json_object_get_int(v), i);
        assert_true(json_object_object_get_ex(ev, "node", &v));
        assert_string_equal(json_object_get_string(v), i % 2 ? "n2" : "n1");
    }
    json_object_put(all);
    all = json_object_new_array();
    assert_int_equal(o->audit_read(m, (int64_t)time(NULL) + 3600,
                                   audit_collect, all), 0);
    assert_int_equal(json_object_array_length(all), 0);
    json_object_put(all);
}

/* Secret values: sealed by the seal key, which an etcd store opens
 * without.  The canary stays in the store for the script's etcdctl dump. */
static void seal_key_and_canary(void **state)
{
    struct cvd_meta *m = open_at("/cryptvol-canary/", NULL);
    struct cv_secret val;
    unsigned char *key;

    (void)state;
    assert_null(m->seal_key);
    assert_int_equal(cvd_meta_secret_add(m, "canary", CANARY,
                                         strlen(CANARY), NULL), -EAGAIN);
    assert_string_equal(cv_last_error(), "secret canary: this node has not "
                        "received the cluster's seal key yet");
    key = cv_secmem_alloc(CVD_NODEKEY_LEN);
    assert_non_null(key);
    memset(key, 0x5a, CVD_NODEKEY_LEN);
    cvd_meta_set_seal_key(m, key);
    assert_int_equal(cvd_meta_secret_add(m, "canary", CANARY,
                                         strlen(CANARY), NULL), 0);
    assert_int_equal(cvd_meta_secret_value(m, "canary", &val), 0);
    assert_int_equal(val.len, strlen(CANARY));
    assert_memory_equal(val.data, CANARY, val.len);
    cv_secret_free(&val);
    cvd_meta_close(m);      /* frees the key */
}

/* ---- three members ---------------------------------------------------- */
static void member_killed_others_answer(void **state)
{
    struct cvd_meta *m = *state;
    const struct cvd_meta_ops *o = m->ops;
    struct cvd_volume_rec v = volume("v1", NULL), got;
    struct cvd_meta_status st;
    char first[256];
    const char *eps = getenv("ETCD_ENDPOINTS"), *comma = strchr(eps, ',');

    assert_non_null(comma);
    snprintf(first, sizeof first, "%.*s", (int)(comma - eps), eps);
    assert_int_equal(o->volume_add(m, &v, NULL), 0);
    o->status(m, &st);
    assert_string_equal(st.endpoint, first);
    /* The member that answered dies: the next one answers. */
    ctl("kill 1");
    assert_int_equal(o->volume_get(m, "v1", &got), 0);
    v = volume("v2", NULL);
    assert_int_equal(o->volume_add(m, &v, NULL), 0);
    o->status(m, &st);
    assert_int_equal(st.reachable, 1);
    assert_string_not_equal(st.endpoint, first);
    ctl("restart 1");
    assert_int_equal(o->volume_get(m, "v2", &got), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest single[] = {
        cmocka_unit_test_setup_teardown(records_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(access_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(unique_names, setup, teardown),
        cmocka_unit_test_setup_teardown(volume_needs_secret_and_class, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(in_use_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(owned_secret_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_revision_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(remove_in_use_race, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(read_modify_write_loses_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(cluster_update_expects, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(keks_and_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(nodes_and_found, setup, teardown),
        cmocka_unit_test_setup_teardown(leases_expire_and_keepalive, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(locks, setup, teardown),
        cmocka_unit_test(replica_states_named),
        cmocka_unit_test_setup_teardown(replica_sets_cas, setup, teardown),
        cmocka_unit_test_setup_teardown(attach_one_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(attach_race_one_wins, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(audit_in_order, setup, teardown),
        cmocka_unit_test(seal_key_and_canary),
        cmocka_unit_test(open_fails_over_and_refuses),
        cmocka_unit_test(hung_endpoint_times_out),
        cmocka_unit_test_setup_teardown(watch_reports_and_resyncs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(unreachable_then_back, setup,
                                        teardown),
    };
    const struct CMUnitTest cluster[] = {
        cmocka_unit_test_setup_teardown(member_killed_others_answer, setup,
                                        teardown),
    };

    if (!getenv("ETCD_ENDPOINTS")) {
        fprintf(stderr, "test-meta-etcd: no ETCD_ENDPOINTS (tests/meta-etcd.sh "
                "starts etcd and runs this)\n");
        return 77;
    }
    if (argc > 1 && !strcmp(argv[1], "cluster"))
        return cmocka_run_group_tests_name("meta-etcd cluster", cluster, NULL,
                                           NULL);
    return cmocka_run_group_tests_name("meta-etcd", single, NULL, NULL);
}
