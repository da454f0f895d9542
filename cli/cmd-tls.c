/* tls init: a demo CA with server and client certificates, in the layout
 * nbdkit, qemu and cryptvold read. */
#include "cli.h"
#include "core/error.h"
#include "tls/tls.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_HOSTS 64

int cmd_tls_init(int argc, char **argv)
{
    static const struct option opts[] = {
        { "host", required_argument, NULL, 'h' },
        { "client-cn", required_argument, NULL, 'c' },
        { 0 } };
    const char *hosts[MAX_HOSTS + 1] = { NULL };
    const char *client_cn = NULL;
    int nhosts = 0, c, r;

    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            if (nhosts == MAX_HOSTS)
                return cli_usage("tls init", "at most %d --host options",
                                 MAX_HOSTS);
            hosts[nhosts++] = optarg;
            break;
        case 'c': client_cn = optarg; break;
        default: return cli_bad_option("tls init", c, argv);
        }
    }
    if (argc - optind != 1)
        return cli_usage("tls init", "needs DIR");
    r = cv_tls_init_dir(argv[optind], nhosts ? hosts : NULL, client_cn);
    if (r < 0)
        return cli_fail(r);
    printf("%s: ca-cert.pem ca-key.pem server-cert.pem server-key.pem "
           "client-cert.pem client-key.pem\n", argv[optind]);
    return EXIT_OK;
}
