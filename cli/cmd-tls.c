/* tls init: a demo CA with server and client certificates, in the layout
 * nbdkit, qemu and cryptvold read. */
#include "args.h"
#include "cli.h"
#include "core/error.h"
#include "tls/tls.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_HOSTS 64

int cmd_tls_init(struct cli_args *a)
{
    const char *hosts[MAX_HOSTS + 1] = { NULL }, *h;
    size_t pos = 0;
    int nhosts = 0, r;

    while ((h = cli_next_value(a, "host", &pos))) {
        if (nhosts == MAX_HOSTS)
            return cli_usage_error(a, "at most %d --host options", MAX_HOSTS);
        hosts[nhosts++] = h;
    }
    r = cv_tls_init_dir(a->arg[0], nhosts ? hosts : NULL,
                        cli_value(a, "client-cn"));
    if (r < 0)
        return cli_fail(r);
    printf("%s: ca-cert.pem ca-key.pem server-cert.pem server-key.pem "
           "client-cert.pem client-key.pem\n", a->arg[0]);
    return EXIT_OK;
}
