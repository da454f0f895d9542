/* cluster migrate --to-etcd: a single node's data directory moved into a
 * cluster on etcd.  The work is the daemon's own code (its metadata
 * backends, the founding of a cluster, sealing), so the command runs
 * cryptvold once with --migrate-to-etcd and the options given; cryptvold
 * takes the data directory's lock, so a running daemon stops it. */
#include "args.h"
#include "cli.h"
#include "core/error.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ARGV 32

/* cryptvold: $CRYPTVOLD, else beside this program as it is installed
 * (bin/ -> sbin/) or built (cli/ -> daemon/), else the PATH. */
static void find_daemon(char *buf, size_t len)
{
    const char *env = getenv("CRYPTVOLD");
    const char *rel[] = { "cryptvold", "../sbin/cryptvold",
                          "../daemon/cryptvold" };
    char self[PATH_MAX], *slash;
    ssize_t n;
    size_t i;

    if (env && *env) {
        snprintf(buf, len, "%s", env);
        return;
    }
    n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        slash = strrchr(self, '/');
        if (slash)
            *slash = '\0';
        for (i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            if (snprintf(buf, len, "%s/%s", self, rel[i]) >= (int)len)
                continue;
            if (access(buf, X_OK) == 0)
                return;
        }
    }
    snprintf(buf, len, "cryptvold");
}

/* The cryptvold command line: every option given becomes the daemon's
 * option of the same name. */
static int build_argv(struct cli_args *a, const char *daemon,
                      const char **argv)
{
    static const char *pass[] = { "data-dir", "etcd-endpoints",
                                  "etcd-tls-dir", "etcd-prefix", "node-name",
                                  "peer-tls-dir", "peer-listen", "config" };
    static char flags[sizeof pass / sizeof pass[0]][32];
    size_t i;
    int n = 0;

    argv[n++] = daemon;
    argv[n++] = "--migrate-to-etcd";
    argv[n++] = "--foreground";
    /* What it founded and moved (notices), warnings and the error. */
    argv[n++] = "--log-level";
    argv[n++] = "notice";
    /* It serves nothing: no TLS credentials to check. */
    argv[n++] = "--tls";
    argv[n++] = "off";
    for (i = 0; i < sizeof pass / sizeof pass[0]; i++) {
        const char *v = cli_value(a, pass[i]);

        if (!v)
            continue;
        snprintf(flags[i], sizeof flags[i], "--%s", pass[i]);
        argv[n++] = flags[i];
        argv[n++] = v;
    }
    argv[n] = NULL;
    return n;
}

int cmd_cluster_migrate(struct cli_args *a)
{
    const char *argv[MAX_ARGV];
    char daemon[PATH_MAX];
    pid_t pid;
    int status;

    if (!cli_flag(a, "to-etcd"))
        return cli_usage_error(a, "--to-etcd is the only migration there "
                               "is: say it");
    find_daemon(daemon, sizeof daemon);
    build_argv(a, daemon, argv);
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return cli_fail(cv_error(-errno, "fork: %s", strerror(errno)));
    if (pid == 0) {
        execvp(daemon, (char *const *)argv);
        fprintf(stderr, "cryptvol: cannot run %s: %s (set CRYPTVOLD to "
                "cryptvold's path)\n", daemon, strerror(errno));
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return cli_fail(cv_error(-errno, "waiting for %s: %s", daemon,
                                     strerror(errno)));
    if (WIFEXITED(status))
        return WEXITSTATUS(status) == 0 ? EXIT_OK : EXIT_ERROR;
    fprintf(stderr, "cryptvol: %s died of signal %d\n", daemon,
            WTERMSIG(status));
    return EXIT_ERROR;
}
