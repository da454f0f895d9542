/* Who may talk to us: the members of the cluster in the metadata store
 * (Joining or Member), and this node's own certificate name.  The cluster
 * module may pass a member check of its own (cached from its watch) to
 * cvd_peer_start; this one asks the store each time, which costs one
 * read per connection, and works without it. */
#include "peer-internal.h"

#include "core/error.h"
#include "daemon.h"
#include "meta/meta.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

int cvd_peer_meta_member(void *arg, const char *name)
{
    struct cvd *d = arg;
    struct cvd_node_rec n;
    int r;

    if (!d->meta || !d->meta->ops->node_get)
        return cv_error(-EOPNOTSUPP, "no metadata store to check members in");
    memset(&n, 0, sizeof n);
    r = d->meta->ops->node_get(d->meta, name, &n);
    if (r == -ENOENT)
        return CVD_PEER_NOT_MEMBER;
    if (r < 0)
        return cv_error_prefix(r, "node %s", name);
    switch (n.state) {
    case CVD_NODE_JOINING:
    case CVD_NODE_MEMBER:
        return CVD_PEER_MEMBER;
    case CVD_NODE_REMOVED:
        return CVD_PEER_REMOVED;
    default:
        return CVD_PEER_NOT_MEMBER;
    }
}

int cvd_peer_own_name(const char *tls_dir, char *name, size_t len)
{
    char path[PATH_MAX];
    struct cv_tls_peer id;
    const char *n;
    int r;

    if (snprintf(path, sizeof path, "%s/server-cert.pem", tls_dir) >=
        (int)sizeof path)
        return cv_error(-ENAMETOOLONG, "peer-tls-dir %s: path too long",
                        tls_dir);
    r = cv_tls_cert_file_identity(path, &id);
    if (r < 0)
        return r;
    n = cv_tls_peer_node_name(&id);
    if (!n)
        return cv_error(-EINVAL, "%s: the certificate has no CN or DNS name "
                        "in printable ASCII (a node's name)", path);
    if (strlen(n) >= len)
        return cv_error(-ENAMETOOLONG, "%s: the certificate's name is "
                        "longer than %zu", path, len - 1);
    snprintf(name, len, "%s", n);
    return 0;
}
