/* Placement (cluster/cluster.h): a volume's data is on the node its record
 * names, and only that node opens, serves or changes it.  The node's name
 * is compared whole: names of one pattern (n1, n10; node-east-1,
 * node-east-10) share their beginnings, and a node that took another's
 * volume for its own would open layers that are not in its data dir, or,
 * worse, a volume of the same name left there from before.
 *
 * A replicated volume is on every node of its replica set; a new set is
 * placed on this node first, then on the Online members holding the
 * fewest replicas (ties by name).  The store here is a fake: members and
 * replica sets in arrays. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/cluster.h"
#include "core/error.h"
#include "daemon.h"
#include "meta/meta.h"

/* Only its address is used: d->node non-NULL is "a cluster node". */
static char node_token;

/* ---- the fake store: members and replica sets ------------------------- */
static struct cvd_node_rec fake_nodes[8];
static size_t fake_nnodes;
static struct cvd_replica_set fake_sets[8];
static size_t fake_nsets;

static int fake_replicas_get(struct cvd_meta *m, const char *volume,
                             struct cvd_replica_set *out)
{
    size_t i;

    (void)m;
    for (i = 0; i < fake_nsets; i++)
        if (!strcmp(fake_sets[i].volume, volume)) {
            *out = fake_sets[i];
            return 0;
        }
    return cv_error(-ENOENT, "volume %s: no replica set", volume);
}

static int fake_replicas_list(struct cvd_meta *m, struct cvd_replica_set **out,
                              size_t *n)
{
    (void)m;
    *out = calloc(fake_nsets + 1, sizeof **out);
    memcpy(*out, fake_sets, fake_nsets * sizeof **out);
    *n = fake_nsets;
    return 0;
}

static int fake_node_list(struct cvd_meta *m, struct cvd_node_rec **out,
                          size_t *n)
{
    (void)m;
    *out = calloc(fake_nnodes + 1, sizeof **out);
    memcpy(*out, fake_nodes, fake_nnodes * sizeof **out);
    *n = fake_nnodes;
    return 0;
}

static const struct cvd_meta_ops fake_ops = {
    .kind = "fake",
    .replicas_get = fake_replicas_get,
    .replicas_list = fake_replicas_list,
    .node_list = fake_node_list,
};
static struct cvd_meta fake_meta = { .ops = &fake_ops, .clustered = 1 };

static void member(const char *name, int alive, enum cvd_node_state st)
{
    struct cvd_node_rec *n = &fake_nodes[fake_nnodes++];

    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", name);
    n->state = st;
    n->alive = alive;
}

/* A set for volume on the nodes given (NULL-terminated). */
static void replica_set(const char *volume, ...)
{
    struct cvd_replica_set *s = &fake_sets[fake_nsets++];
    const char *node;
    va_list ap;

    memset(s, 0, sizeof *s);
    snprintf(s->volume, sizeof s->volume, "%s", volume);
    va_start(ap, volume);
    while ((node = va_arg(ap, const char *)))
        snprintf(s->r[s->n++].node, CVD_NAME_MAX + 1, "%s", node);
    va_end(ap);
    s->want = s->n;
}

static void on_node(struct cvd *d, const char *name)
{
    memset(d, 0, sizeof *d);
    d->cfg.node_name = (char *)name;
    d->node = (struct cvd_node *)&node_token;
    d->meta = &fake_meta;
    fake_nnodes = fake_nsets = 0;
}

static struct cvd_volume_rec on(const char *node)
{
    struct cvd_volume_rec v;

    memset(&v, 0, sizeof v);
    snprintf(v.name, sizeof v.name, "v");
    snprintf(v.node, sizeof v.node, "%s", node);
    return v;
}

/* remote(d, node): a volume placed on node is not d's, and both checks
 * say so naming node. */
static void remote(struct cvd *d, const char *node)
{
    struct cvd_volume_rec v = on(node);
    char want[160];

    if (cvd_node_is_local(d, &v))
        fail_msg("node %s takes a volume placed on %s for its own",
                 d->cfg.node_name, node);
    assert_int_equal(cvd_node_check_attach(d, &v), -EREMOTE);
    snprintf(want, sizeof want, "volume v: its data is on node %s (attach "
             "it there)", node);
    assert_string_equal(cv_last_error(), want);
    assert_int_equal(cvd_node_check_placement(d, &v), -EREMOTE);
    snprintf(want, sizeof want, "volume v: its data is on node %s (use its "
             "admin API)", node);
    assert_string_equal(cv_last_error(), want);
}

/* outside(d, node): a replicated volume whose set does not name d: not
 * d's (its own work on it is refused, naming node), but d may attach it
 * (it is served from the replicas, repl/remote-*.c). */
static void outside(struct cvd *d, const char *node)
{
    struct cvd_volume_rec v = on(node);
    char want[160];

    if (cvd_node_is_local(d, &v))
        fail_msg("node %s takes a volume placed on %s for its own",
                 d->cfg.node_name, node);
    assert_int_equal(cvd_node_check_attach(d, &v), 0);
    assert_int_equal(cvd_node_check_placement(d, &v), -EREMOTE);
    snprintf(want, sizeof want, "volume v: its data is on node %s (use its "
             "admin API)", node);
    assert_string_equal(cv_last_error(), want);
}

static void local(struct cvd *d, const char *node)
{
    struct cvd_volume_rec v = on(node);

    if (!cvd_node_is_local(d, &v))
        fail_msg("node %s does not take a volume placed on \"%s\" for its "
                 "own", d->cfg.node_name ? d->cfg.node_name : "(none)", node);
    assert_int_equal(cvd_node_check_attach(d, &v), 0);
    assert_int_equal(cvd_node_check_placement(d, &v), 0);
}

static void single_node_holds_all(void **state)
{
    struct cvd d;
    struct cvd_volume_rec v = on("n2");

    (void)state;
    memset(&d, 0, sizeof d);
    d.cfg.node_name = (char *)"n1";
    local(&d, "");
    local(&d, "n2");
    /* A single node places nothing. */
    cvd_node_place(&d, &v);
    assert_string_equal(v.node, "");
}

static void names_compared_whole(void **state)
{
    struct cvd d;
    struct cvd_volume_rec v = on("");

    (void)state;
    on_node(&d, "n1");
    local(&d, "n1");
    local(&d, "");              /* made before the cluster */
    remote(&d, "n2");
    remote(&d, "n10");
    remote(&d, "n");
    cvd_node_place(&d, &v);
    assert_string_equal(v.node, "n1");

    on_node(&d, "n10");
    local(&d, "n10");
    remote(&d, "n1");

    on_node(&d, "node-east-10");
    remote(&d, "node-east-1");
    remote(&d, "node-east-100");
    local(&d, "node-east-10");
}

/* Every node of a set holds the volume (may attach it, serve it, change
 * it); a node outside the set does not, even when the set names one
 * whose name begins like its own, but may attach it. */
static void replica_set_nodes_hold_it(void **state)
{
    struct cvd d;

    (void)state;
    on_node(&d, "n2");
    replica_set("v", "n1", "n2", "n3", NULL);
    local(&d, "n1");
    on_node(&d, "n3");
    replica_set("v", "n1", "n2", "n3", NULL);
    local(&d, "n1");
    on_node(&d, "n4");
    replica_set("v", "n1", "n2", "n3", NULL);
    outside(&d, "n1");
    on_node(&d, "n1");
    replica_set("v", "n10", "n11", NULL);
    outside(&d, "n10");
    /* No set: v->node alone. */
    on_node(&d, "n2");
    remote(&d, "n1");
}

static void place(struct cvd *d, unsigned n, const char *want)
{
    char out[CVD_MAX_REPLICAS][CVD_NAME_MAX + 1];
    char got[CVD_MAX_REPLICAS * (CVD_NAME_MAX + 1) + 1] = "";
    unsigned i;

    assert_int_equal(cvd_node_place_replicas(d, n, NULL, 0, out), 0);
    for (i = 0; i < n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s",
                 i ? " " : "", out[i]);
    assert_string_equal(got, want);
}

/* This node first, then the Online members with the fewest replicas,
 * ties by name; Offline, Joining and Removed members never. */
static void replicas_placed_least_loaded(void **state)
{
    char out[CVD_MAX_REPLICAS][CVD_NAME_MAX + 1];
    const char ex[2][CVD_NAME_MAX + 1] = { "n1", "n3" };
    struct cvd d;

    (void)state;
    on_node(&d, "n3");
    member("n1", 1, CVD_NODE_MEMBER);
    member("n2", 1, CVD_NODE_MEMBER);
    member("n3", 1, CVD_NODE_MEMBER);
    member("n4", 1, CVD_NODE_MEMBER);
    member("n5", 0, CVD_NODE_MEMBER);       /* Offline */
    member("n6", 1, CVD_NODE_JOINING);
    member("n7", 1, CVD_NODE_REMOVED);
    place(&d, 3, "n3 n1 n2");
    replica_set("a", "n1", "n2", NULL);
    replica_set("b", "n2", "n3", "n4", NULL);
    /* n1: 1, n2: 2, n4: 1; ties by name. */
    place(&d, 3, "n3 n1 n4");
    place(&d, 4, "n3 n1 n4 n2");
    place(&d, 1, "n3");
    assert_int_equal(cvd_node_place_replicas(&d, 5, NULL, 0, out), -ENOSPC);
    assert_string_equal(cv_last_error(), "5 replicas need 5 Online nodes; "
                        "the cluster has 4 Online (each replica is on its own "
                        "node)");
    /* Growing a set on n1 and n3: neither again, this node not first. */
    assert_int_equal(cvd_node_place_replicas(&d, 2, ex, 2, out), 0);
    assert_string_equal(out[0], "n4");
    assert_string_equal(out[1], "n2");
    assert_int_equal(cvd_node_place_replicas(&d, 3, ex, 2, out), -ENOSPC);
    /* This node not Online (its lease gone): not placed on. */
    on_node(&d, "n1");
    member("n1", 0, CVD_NODE_MEMBER);
    member("n2", 1, CVD_NODE_MEMBER);
    member("n3", 1, CVD_NODE_MEMBER);
    place(&d, 2, "n2 n3");
}

static void single_node_places_no_replicas(void **state)
{
    char out[CVD_MAX_REPLICAS][CVD_NAME_MAX + 1];
    struct cvd d;

    (void)state;
    memset(&d, 0, sizeof d);
    d.cfg.node_name = (char *)"n1";
    assert_int_equal(cvd_node_place_replicas(&d, 2, NULL, 0, out), -EINVAL);
    assert_string_equal(cv_last_error(), "a single node has no replicas");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(single_node_holds_all),
        cmocka_unit_test(names_compared_whole),
        cmocka_unit_test(replica_set_nodes_hold_it),
        cmocka_unit_test(replicas_placed_least_loaded),
        cmocka_unit_test(single_node_places_no_replicas),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
