/* systemd's notification protocol, written out rather than linked from
 * libsystemd: it is one sendto() of a text datagram to a unix socket
 * (documented as a stable interface in sd_notify(3), "Notes"), and a
 * daemon that also runs where there is no systemd should not need
 * libsystemd for it. */
#include "notify.h"
#include "core/error.h"
#include "log.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Set once by cvd_notify_init, before threads. */
static struct sockaddr_un notify_addr;
static socklen_t notify_len;

int cvd_notify_init(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    size_t n;

    notify_len = 0;
    if (!path || !*path)
        return 0;
    n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') ||
        n >= sizeof notify_addr.sun_path)
        return cv_error(-EINVAL, "NOTIFY_SOCKET \"%.120s\" is not a unix "
                        "socket path or abstract name", path);
    memset(&notify_addr, 0, sizeof notify_addr);
    notify_addr.sun_family = AF_UNIX;
    memcpy(notify_addr.sun_path, path, n);
    /* "@name" is the abstract name "\0name", whose length counts. */
    if (path[0] == '@')
        notify_addr.sun_path[0] = '\0';
    notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                             (path[0] == '/'));
    unsetenv("NOTIFY_SOCKET");
    return 0;
}

void cvd_notify(const char *state)
{
    int fd;

    if (!notify_len)
        return;
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        cvd_debug("notify: socket: %s", strerror(errno));
        return;
    }
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL,
               (struct sockaddr *)&notify_addr, notify_len) < 0)
        cvd_debug("notify: %s: %s", notify_addr.sun_path[0] ?
                  notify_addr.sun_path : notify_addr.sun_path + 1,
                  strerror(errno));
    close(fd);
}

void cvd_notify_ready(void)
{
    cvd_notify("READY=1\nSTATUS=serving");
}

/* systemd 253 and later (Type=notify-reload) want the reload's start on
 * CLOCK_MONOTONIC with it; older ones ignore the line. */
void cvd_notify_reloading(void)
{
    struct timespec t;
    char msg[96];

    clock_gettime(CLOCK_MONOTONIC, &t);
    snprintf(msg, sizeof msg, "RELOADING=1\nSTATUS=reloading\n"
             "MONOTONIC_USEC=%llu", (unsigned long long)t.tv_sec * 1000000 +
             (unsigned long long)t.tv_nsec / 1000);
    cvd_notify(msg);
}

void cvd_notify_stopping(void)
{
    cvd_notify("STOPPING=1\nSTATUS=stopping: flushing volumes");
}
