/* peer-call: one request to a node's peer port, as another node would
 * make it (cvd_peer_call), for tests: a member, a stranger with a
 * certificate of the cluster CA, a removed node, a certificate of another
 * CA are all just a --tls-dir.
 *
 *   peer-call --tls-dir DIR --name NODE ADDRESS [ping|stats|TYPE]
 *
 * Prints the answer's payload on stdout (STATS: the node's JSON) and
 * exits 0; on error prints the message on stderr ("peer n1
 * (127.0.0.11:7400): refused: n4 is removed from the cluster") and exits
 * 1.  TYPE is a number (0x0100). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/secmem.h"
#include "daemon.h"
#include "log.h"
#include "peer/peer.h"

static int usage(void)
{
    fprintf(stderr, "usage: peer-call --tls-dir DIR --name NODE ADDRESS "
            "[ping|stats|TYPE]\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct cvd d;
    const char *dir = NULL, *name = NULL, *addr = NULL, *what = "ping";
    void *resp = NULL;
    size_t len = 0;
    uint16_t type, got = 0;
    int i, r;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tls-dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--name") && i + 1 < argc)
            name = argv[++i];
        else if (!addr)
            addr = argv[i];
        else
            what = argv[i];
    }
    if (!dir || !name || !addr)
        return usage();
    type = !strcmp(what, "ping") ? CVD_PEER_PING :
           !strcmp(what, "stats") ? CVD_PEER_STATS :
           (uint16_t)strtoul(what, NULL, 0);
    if (!type)
        return usage();
    cvd_log_init(LOG_ERR);
    memset(&d, 0, sizeof d);
    d.cfg.peer_tls_dir = (char *)dir;
    r = cvd_peer_call(&d, name, addr, type, NULL, 0, &resp, &len, &got);
    if (r < 0) {
        fprintf(stderr, "%s\n", cv_last_error());
        return 1;
    }
    if (len && fwrite(resp, 1, len, stdout) != len)
        r = -EIO;
    if (type == CVD_PEER_STATS)
        putchar('\n');
    cv_secmem_free(resp, len);
    return r < 0 ? 1 : 0;
}
