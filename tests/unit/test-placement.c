/* Placement (cluster/cluster.h): a volume's data is on the node its record
 * names, and only that node opens, serves or changes it.  The node's name
 * is compared whole: names of one pattern (n1, n10; node-east-1,
 * node-east-10) share their beginnings, and a node that took another's
 * volume for its own would open layers that are not in its data dir, or,
 * worse, a volume of the same name left there from before. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/cluster.h"
#include "core/error.h"
#include "daemon.h"
#include "meta/meta.h"

/* Only its address is used: d->node non-NULL is "a cluster node". */
static char node_token;

static void on_node(struct cvd *d, const char *name)
{
    memset(d, 0, sizeof *d);
    d->cfg.node_name = (char *)name;
    d->node = (struct cvd_node *)&node_token;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(single_node_holds_all),
        cmocka_unit_test(names_compared_whole),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
