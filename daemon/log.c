#include "log.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Configuration, set once before any thread starts, except that the
 * target moves from the terminal to syslog and the echo stops when a
 * detached daemon is ready (cvd_log_ready), from the main thread while
 * others may log: hence the atomics. */
static int max_level = LOG_INFO;
static _Atomic int target = CVD_LOG_STDERR;
/* Until ready, warnings and errors also go to stderr when the log goes
 * elsewhere, so whoever started the daemon sees why it did not start. */
static _Atomic int echo_stderr;
static char *file_path;         /* CVD_LOG_FILE: reopened on SIGHUP */
static int file_fd = -1;        /* the same number across reopens (dup2) */
static int file_on_stderr;      /* detached: fd 2 is the file too */

static const char *const level_names[] = {
    "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

/* journald connects stderr to itself and says so in JOURNAL_STREAM
 * ("DEV:INODE" of the stream); a stderr redirected elsewhere by a child of
 * the service no longer matches, and gets plain lines. */
static int stderr_is_journal(void)
{
    const char *env = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (!env || sscanf(env, "%llu:%llu", &dev, &ino) != 2)
        return 0;
    if (fstat(STDERR_FILENO, &st) < 0)
        return 0;
    return (unsigned long long)st.st_dev == dev &&
           (unsigned long long)st.st_ino == ino;
}

static int open_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC |
                  O_NOCTTY, 0600);

    if (fd < 0)
        return cv_error(-errno, "log file %s: %s", path, strerror(errno));
    return fd;
}

int cvd_log_open(int level, const char *path, int detached)
{
    max_level = level;
    free(file_path);
    file_path = NULL;
    if (path) {
        int fd = open_file(path);

        if (fd < 0)
            return fd;
        file_path = strdup(path);
        if (!file_path) {
            close(fd);
            return cv_error(-ENOMEM, "log file %s: out of memory", path);
        }
        file_fd = fd;
        target = CVD_LOG_FILE;
    } else if (stderr_is_journal()) {
        target = CVD_LOG_JOURNAL;
    } else if (detached) {
        openlog("cryptvold", LOG_PID, LOG_DAEMON);
        target = CVD_LOG_SYSLOG;
    } else {
        target = CVD_LOG_STDERR;
    }
    echo_stderr = target == CVD_LOG_FILE || target == CVD_LOG_SYSLOG;
    return 0;
}

void cvd_log_init(int level)
{
    max_level = level;
    target = stderr_is_journal() ? CVD_LOG_JOURNAL : CVD_LOG_STDERR;
}

enum cvd_log_target cvd_log_target(void)
{
    return target;
}

int cvd_log_echoes_stderr(void)
{
    return echo_stderr;
}

/* The terminal (or whatever stderr was) is let go: nothing more is
 * written there.  Stray library output on fd 2 lands in the log file if
 * there is one, else in /dev/null. */
void cvd_log_ready(int detached)
{
    int fd;

    echo_stderr = 0;
    if (!detached || target == CVD_LOG_JOURNAL)
        return;
    if (target == CVD_LOG_FILE) {
        dup2(file_fd, STDERR_FILENO);
        file_on_stderr = 1;
        return;
    }
    fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
}

/* logrotate renames the file and sends SIGHUP: the next lines go to a new
 * file at the same path.  dup2 swaps the file under the same descriptor
 * number at once, so a thread writing a line meanwhile writes it whole to
 * the old file or the new one. */
int cvd_log_reopen(void)
{
    int fd;

    if (target != CVD_LOG_FILE)
        return 0;
    fd = open_file(file_path);
    if (fd < 0)
        return fd;
    if (dup2(fd, file_fd) < 0 ||
        (file_on_stderr && dup2(fd, STDERR_FILENO) < 0)) {
        int e = errno;

        close(fd);
        return cv_error(-e, "log file %s: dup2: %s", file_path, strerror(e));
    }
    close(fd);
    return 0;
}

int cvd_log_level_parse(const char *s)
{
    for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    if (strcmp(s, "err") == 0 || strcmp(s, "warn") == 0)
        return s[0] == 'e' ? LOG_ERR : LOG_WARNING;
    return -1;
}

/* One write per line, so lines from different threads never mix (the
 * file is O_APPEND; a line is far below PIPE_BUF for pipes). */
static void write_line(int fd, const char *line, size_t len)
{
    ssize_t n = write(fd, line, len);

    (void)n;    /* nowhere left to report a failed log write */
}

static void emit_plain(int fd, int level, const char *msg)
{
    char ts[32], line[1200];
    struct timespec now;
    struct tm tm;
    int n;

    clock_gettime(CLOCK_REALTIME, &now);
    localtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof line, "%s.%03ld cryptvold %s: %s\n", ts,
                 now.tv_nsec / 1000000, level_names[level], msg);
    if (n > 0)
        write_line(fd, line, (size_t)n < sizeof line ? (size_t)n
                                                      : sizeof line - 1);
}

static void emit(int level, const char *msg)
{
    char line[1200];
    int n;

    switch ((enum cvd_log_target)target) {
    case CVD_LOG_JOURNAL:
        n = snprintf(line, sizeof line, "<%d>%s\n", level, msg);
        if (n > 0)
            write_line(STDERR_FILENO, line, (size_t)n < sizeof line ?
                       (size_t)n : sizeof line - 1);
        return;
    case CVD_LOG_FILE:
        emit_plain(file_fd, level, msg);
        break;
    case CVD_LOG_SYSLOG:
        syslog(level, "%s", msg);
        break;
    case CVD_LOG_STDERR:
        emit_plain(STDERR_FILENO, level, msg);
        return;
    }
    if (echo_stderr && level <= LOG_WARNING)
        emit_plain(STDERR_FILENO, level, msg);
}

void cvd_log(int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (level > max_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(level, msg);
}

void cvd_ratelimit_init(struct cvd_ratelimit *rl)
{
    memset(rl, 0, sizeof *rl);
    pthread_mutex_init(&rl->lock, NULL);
}

void cvd_ratelimit_destroy(struct cvd_ratelimit *rl)
{
    pthread_mutex_destroy(&rl->lock);
}

static int64_t now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The key's slot, or the least recently used one taken over for it. */
static int find_slot(struct cvd_ratelimit *rl, const char *key)
{
    int oldest = 0;

    for (int i = 0; i < CVD_RATELIMIT_KEYS; i++) {
        if (rl->slot[i].key && !strcmp(rl->slot[i].key, key))
            return i;
        if (!rl->slot[i].key ||
            (rl->slot[oldest].key &&
             rl->slot[i].window_ms < rl->slot[oldest].window_ms))
            oldest = i;
    }
    rl->slot[oldest].key = key;
    rl->slot[oldest].window_ms = 0;
    rl->slot[oldest].lines = 0;
    rl->slot[oldest].suppressed = 0;
    return oldest;
}

/* 1 to print (with *dropped lines suppressed before it), 0 to drop. */
static int ratelimit_pass(struct cvd_ratelimit *rl, const char *key,
                          unsigned long *dropped)
{
    int64_t now = now_ms();
    int i, pass;

    pthread_mutex_lock(&rl->lock);
    i = find_slot(rl, key);
    if (now - rl->slot[i].window_ms >= 1000) {
        rl->slot[i].window_ms = now;
        rl->slot[i].lines = 0;
    }
    pass = rl->slot[i].lines < CVD_RATELIMIT_BURST;
    *dropped = 0;
    if (pass) {
        rl->slot[i].lines++;
        *dropped = rl->slot[i].suppressed;
        rl->slot[i].suppressed = 0;
    } else {
        rl->slot[i].suppressed++;
    }
    pthread_mutex_unlock(&rl->lock);
    return pass;
}

void cvd_log_limited(struct cvd_ratelimit *rl, const char *key, int level,
                     const char *fmt, ...)
{
    char msg[1024];
    unsigned long dropped = 0;
    size_t n;
    va_list ap;

    if (level > max_level || (rl && !ratelimit_pass(rl, key, &dropped)))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    n = strlen(msg);
    if (dropped && n < sizeof msg)
        snprintf(msg + n, sizeof msg - n, " (%lu similar lines suppressed)",
                 dropped);
    emit(level, msg);
}
