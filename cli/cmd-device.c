/* device map / device unmap: a volume as a local block device, attached
 * by the kernel's NBD client as "rbd device map -t nbd" does.  nbd-client
 * (the nbd-client package) configures /dev/nbdN and, for TLS, stays as the
 * proxy between the kernel's plaintext socket and the TLS connection to
 * cryptvold (the kernel cannot do TLS itself). */
#include "args.h"
#include "cli.h"
#include "core/error.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define DEFAULT_SERVER  "127.0.0.1"
#define DEFAULT_PORT    "10809"
#define DEFAULT_TLS_DIR "/etc/cryptvol/tls"
#define MAX_NBD_DEVICES 1024

struct map_args {
    const char *name;
    const char *device;         /* NULL: the first free one */
    char host[256];
    char port[8];
    const char *unix_path;      /* the daemon's NBD unix socket instead */
    const char *tls_dir;
    const char *tls_hostname;
    int no_tls;
    char devbuf[32];
};

/* "/dev/nbdN" -> N, or -1. */
static int nbd_index(const char *dev)
{
    const char *p = dev + strlen("/dev/nbd");
    char *end;
    long n;

    if (strncmp(dev, "/dev/nbd", 8) || !isdigit((unsigned char)*p))
        return -1;
    n = strtol(p, &end, 10);
    return *end || n < 0 || n >= MAX_NBD_DEVICES ? -1 : (int)n;
}

/* HOST, HOST:PORT or [V6]:PORT. */
static int parse_server(const struct cli_args *ca, const char *s,
                        struct map_args *a)
{
    const char *colon = strrchr(s, ':'), *host = s;
    size_t hlen;
    char *end;
    unsigned long port;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (!close || (close[1] && close[1] != ':'))
            return cli_usage_error(ca, "--server \"%s\": expected "
                             "HOST[:PORT] or [IPV6]:PORT", s);
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close[1] ? close + 1 : NULL;
    } else if (colon && strchr(s, ':') != colon) {
        colon = NULL;               /* a bare IPv6 address */
        hlen = strlen(s);
    } else {
        hlen = colon ? (size_t)(colon - s) : strlen(s);
    }
    if (!hlen || hlen >= sizeof a->host)
        return cli_usage_error(ca, "--server \"%s\": no host", s);
    memcpy(a->host, host, hlen);
    a->host[hlen] = '\0';
    if (!colon)
        return 0;
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (!isdigit((unsigned char)colon[1]) || *end || errno || port == 0 ||
        port > 65535)
        return cli_usage_error(ca, "--server \"%s\": port \"%s\" is not "
                         "1 to 65535", s, colon + 1);
    snprintf(a->port, sizeof a->port, "%lu", port);
    return 0;
}

static int parse_map(const struct cli_args *ca, struct map_args *a)
{
    const char *server = cli_value(ca, "server");

    snprintf(a->host, sizeof a->host, DEFAULT_SERVER);
    snprintf(a->port, sizeof a->port, DEFAULT_PORT);
    a->name = ca->arg[0];
    a->device = cli_value(ca, "device");
    a->unix_path = cli_value(ca, "unix");
    a->tls_dir = cli_value(ca, "tls-dir");
    a->tls_hostname = cli_value(ca, "tls-hostname");
    a->no_tls = cli_flag(ca, "no-tls");
    if (a->device && nbd_index(a->device) < 0)
        return cli_usage_error(ca, "--device \"%s\" is not an NBD "
                         "device (/dev/nbdN)", a->device);
    if (server && a->unix_path)
        return cli_usage_error(ca, "--server and --unix exclude each "
                         "other");
    if (a->no_tls && (a->tls_dir || a->tls_hostname))
        return cli_usage_error(ca, "--no-tls contradicts --tls-dir and "
                         "--tls-hostname");
    /* nbd-client does no TLS on a unix socket; the daemon knows the
     * client by its uid there. */
    if (a->unix_path && (a->tls_dir || a->tls_hostname))
        return cli_usage_error(ca, "--unix takes no TLS options (the "
                         "daemon knows the client by its uid there)");
    if (a->unix_path)
        a->no_tls = 1;
    if (!a->no_tls && !a->tls_dir)
        a->tls_dir = DEFAULT_TLS_DIR;
    return server ? parse_server(ca, server, a) : 0;
}

static int check_tls_files(const char *dir)
{
    static const char *const files[] = {
        "ca-cert.pem", "client-cert.pem", "client-key.pem" };
    char path[4096];

    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (access(path, R_OK) < 0)
            return cv_error(-errno, "--tls-dir %s: %s: %s (cryptvol tls init "
                            "makes a CA and client certificate; --no-tls "
                            "for a daemon without TLS)", dir, files[i],
                            strerror(errno));
    }
    return 0;
}

/* Runs argv[0] from PATH and waits; returns its exit status, or a
 * negative error if it could not be run. */
static int run(char *const *args, int quiet)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int st, r;

    posix_spawn_file_actions_init(&fa);
    if (quiet) {
        posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null",
                                         O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null",
                                         O_WRONLY, 0);
    }
    r = posix_spawnp(&pid, args[0], &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0)
        return cv_error(-r, "%s: %s", args[0], strerror(r));
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return cv_error(-errno, "%s: waitpid: %s", args[0],
                            strerror(errno));
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int have_program(const char *name)
{
    const char *path = getenv("PATH");
    char buf[4096];

    for (const char *p = path ? path : "/usr/sbin:/usr/bin:/sbin:/bin"; *p;) {
        size_t n = strcspn(p, ":");

        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, p, name);
        if (access(buf, X_OK) == 0)
            return 1;
        p += n + (p[n] == ':');
    }
    return 0;
}

/* The kernel's NBD client: the nbd module, loaded if it is not. */
static int ensure_nbd_module(void)
{
    char *const args[] = { "modprobe", "nbd", NULL };
    int st;

    if (access("/sys/module/nbd", F_OK) == 0)
        return 0;
    st = have_program("modprobe") ? run(args, 1) : -ENOENT;
    if (access("/sys/module/nbd", F_OK) == 0)
        return 0;
    if (st == -ENOENT)
        return cv_error(-ENODEV, "the kernel NBD client is not available: "
                        "the nbd module is not loaded and modprobe is not "
                        "installed (Debian: kmod)");
    return cv_error(-ENODEV, "the kernel NBD client is not available: the "
                    "nbd module is not loaded and \"modprobe nbd\" failed "
                    "(%s %d): this kernel cannot map; nbdfuse or qemu-nbd "
                    "reach the volume from user space",
                    st < 0 ? "error" : "exit", st);
}

/* A device no nbd-client holds: /sys/block/nbdN/pid appears when one is
 * connected. */
static int device_in_use(int n)
{
    char path[64];

    snprintf(path, sizeof path, "/sys/block/nbd%d/pid", n);
    return access(path, F_OK) == 0;
}

static int device_exists(int n)
{
    char path[64];

    snprintf(path, sizeof path, "/sys/block/nbd%d", n);
    return access(path, F_OK) == 0;
}

static int pick_device(struct map_args *a)
{
    int n;

    if (a->device) {
        n = nbd_index(a->device);
        if (!device_exists(n))
            return cv_error(-ENODEV, "%s: no such NBD device (the nbd module "
                            "makes nbds_max of them)", a->device);
        if (device_in_use(n))
            return cv_error(-EBUSY, "%s is already mapped (cryptvol device "
                            "unmap %s)", a->device, a->device);
        return 0;
    }
    for (n = 0; n < MAX_NBD_DEVICES && device_exists(n); n++) {
        if (!device_in_use(n)) {
            snprintf(a->devbuf, sizeof a->devbuf, "/dev/nbd%d", n);
            a->device = a->devbuf;
            return 0;
        }
    }
    return cv_error(-EBUSY, "every NBD device (%d) is in use", n);
}

static int map_volume(struct map_args *a)
{
    char cert[4096], key[4096], ca[4096];
    char *args[24];
    int i = 0, st;

    args[i++] = "nbd-client";
    args[i++] = "-N";
    args[i++] = (char *)a->name;
    if (!a->no_tls) {
        snprintf(cert, sizeof cert, "%s/client-cert.pem", a->tls_dir);
        snprintf(key, sizeof key, "%s/client-key.pem", a->tls_dir);
        snprintf(ca, sizeof ca, "%s/ca-cert.pem", a->tls_dir);
        args[i++] = "-certfile"; args[i++] = cert;
        args[i++] = "-keyfile"; args[i++] = key;
        args[i++] = "-cacertfile"; args[i++] = ca;
        if (a->tls_hostname) {
            args[i++] = "-tlshostname";
            args[i++] = (char *)a->tls_hostname;
        }
    }
    if (a->unix_path) {
        args[i++] = "-unix";
        args[i++] = (char *)a->unix_path;
    } else {
        args[i++] = a->host;
        args[i++] = a->port;
    }
    args[i++] = (char *)a->device;
    args[i] = NULL;
    st = run(args, 0);
    if (st < 0)
        return st;
    if (st != 0)
        return cv_error(-EIO, "volume %s: nbd-client could not attach it to "
                        "%s (exit %d; its message is above)", a->name,
                        a->device, st);
    return 0;
}

/* Checks in the order an operator fixes them: usage, root, nbd-client,
 * the module, the device, then the connection. */
int cmd_device_map(struct cli_args *ca)
{
    struct map_args a = { 0 };
    int r = parse_map(ca, &a);

    if (r != 0)
        return r;
    if (geteuid() != 0)
        r = cv_error(-EPERM, "device map needs root: nbd-client configures a "
                     "kernel block device");
    if (r == 0 && !a.no_tls)
        r = check_tls_files(a.tls_dir);
    if (r == 0 && !have_program("nbd-client"))
        r = cv_error(-ENOENT, "nbd-client is not installed (Debian: apt-get "
                     "install nbd-client)");
    if (r == 0)
        r = ensure_nbd_module();
    if (r == 0)
        r = pick_device(&a);
    if (r == 0)
        r = map_volume(&a);
    if (r < 0)
        return cli_fail(r);
    printf("%s\n", a.device);
    return EXIT_OK;
}

int cmd_device_unmap(struct cli_args *ca)
{
    char *args[] = { "nbd-client", "-d", NULL, NULL };
    const char *dev = ca->arg[0];
    int n, st;

    n = nbd_index(dev);
    if (n < 0)
        return cli_usage_error(ca, "\"%s\" is not an NBD device "
                         "(/dev/nbdN)", dev);
    if (geteuid() != 0)
        return cli_fail(cv_error(-EPERM, "device unmap needs root"));
    if (!device_exists(n))
        return cli_fail(cv_error(-ENODEV, "%s: no such NBD device%s", dev,
                        access("/sys/module/nbd", F_OK) ? " (the nbd module "
                        "is not loaded)" : ""));
    if (!device_in_use(n))
        return cli_fail(cv_error(-ENOENT, "%s is not mapped", dev));
    if (!have_program("nbd-client"))
        return cli_fail(cv_error(-ENOENT, "nbd-client is not installed"));
    args[2] = (char *)dev;
    st = run(args, 0);
    if (st != 0)
        return cli_fail(st < 0 ? st : cv_error(-EIO, "%s: nbd-client -d "
                        "exited %d", dev, st));
    return EXIT_OK;
}
