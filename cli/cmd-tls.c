/* tls init: a demo CA with server and client certificates, in the layout
 * nbdkit, qemu and cryptvold read; tls issue: a cluster node's certificate
 * from that CA. */
#include "args.h"
#include "cli.h"
#include "core/error.h"
#include "tls/tls.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_HOSTS 64

/* The --host values, NULL-terminated; hosts has MAX_HOSTS + 1 entries. */
static int collect_hosts(struct cli_args *a, const char **hosts, int *n)
{
    size_t pos = 0;
    const char *h;

    *n = 0;
    while ((h = cli_next_value(a, "host", &pos))) {
        if (*n == MAX_HOSTS)
            return cli_usage_error(a, "at most %d --host options", MAX_HOSTS);
        hosts[(*n)++] = h;
    }
    hosts[*n] = NULL;
    return EXIT_OK;
}

int cmd_tls_init(struct cli_args *a)
{
    const char *hosts[MAX_HOSTS + 1];
    int nhosts, r;

    r = collect_hosts(a, hosts, &nhosts);
    if (r != EXIT_OK)
        return r;
    r = cv_tls_init_dir(a->arg[0], nhosts ? hosts : NULL,
                        cli_value(a, "client-cn"));
    if (r < 0)
        return cli_fail(r);
    printf("%s: ca-cert.pem ca-key.pem server-cert.pem server-key.pem "
           "client-cert.pem client-key.pem\n", a->arg[0]);
    return EXIT_OK;
}

int cmd_tls_issue(struct cli_args *a)
{
    const char *hosts[MAX_HOSTS + 1];
    int nhosts, r;

    r = collect_hosts(a, hosts, &nhosts);
    if (r != EXIT_OK)
        return r;
    r = cv_tls_issue_dir(a->arg[0], a->arg[1], cli_value(a, "name"), hosts,
                         cli_flag(a, "force"));
    if (r < 0)
        return cli_fail(r);
    printf("%s: ca-cert.pem server-cert.pem server-key.pem client-cert.pem "
           "client-key.pem (CN=%s)\n", a->arg[1], cli_value(a, "name"));
    return EXIT_OK;
}
