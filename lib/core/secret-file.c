#include "secret-file.h"
#include "error.h"
#include "secmem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Doubles s's locked buffer (at most to CV_SECRET_MAX + 1 bytes, one more
 * than a secret may have, to tell one too long), wiping the old one. */
static int grow(struct cv_secret *s, const char *what)
{
    size_t cap = s->alloc ? s->alloc * 2 : 4096;
    char *bigger;

    if (cap > CV_SECRET_MAX + 1)
        cap = CV_SECRET_MAX + 1;
    bigger = cv_secmem_alloc(cap);
    if (!bigger)
        return cv_error_prefix(-ENOMEM, "%s", what);
    if (s->data)
        memcpy(bigger, s->data, s->len);
    cv_secmem_free(s->data, s->alloc);
    s->data = bigger;
    s->alloc = cap;
    return 0;
}

int cv_secret_read_stream(int fd, const char *what, struct cv_secret *s)
{
    ssize_t n;
    int r = 0;

    memset(s, 0, sizeof *s);
    while (r == 0) {
        if (s->len > CV_SECRET_MAX) {
            r = cv_error(-EFBIG, "%s: larger than %d bytes", what,
                         CV_SECRET_MAX);
            break;
        }
        if (s->len == s->alloc && (r = grow(s, what)) < 0)
            break;
        n = read(fd, s->data + s->len, s->alloc - s->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            r = cv_error(-errno, "%s: %s", what, strerror(errno));
        else if (n == 0)
            break;
        else
            s->len += (size_t)n;
    }
    if (r == 0 && s->len == 0)
        r = cv_error(-EINVAL, "%s: empty", what);
    if (r < 0)
        cv_secret_free(s);
    return r;
}

/* "-": standard input, to its end; not a terminal (it would echo). */
static int read_stdin(const char *what, struct cv_secret *s)
{
    char name[128];

    snprintf(name, sizeof name, "%s - (standard input)", what);
    memset(s, 0, sizeof *s);
    if (isatty(STDIN_FILENO))
        return cv_error(-EINVAL, "%s is a terminal: pipe the secret in, or "
                        "give a file", name);
    return cv_secret_read_stream(STDIN_FILENO, name, s);
}

int cv_secret_read_file(const char *path, const char *what,
                        struct cv_secret *s)
{
    struct stat st;
    size_t got = 0;
    int fd, r = 0;

    if (!strcmp(path, "-"))
        return read_stdin(what, s);
    memset(s, 0, sizeof *s);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return cv_error(-errno, "%s %s: %s", what, path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        r = cv_error(-errno, "%s %s: %s", what, path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = cv_error(-EINVAL, "%s %s: not a regular file", what, path);
        goto out;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        r = cv_error(-EPERM, "%s %s: mode %04o lets group or others read it; "
                     "refusing (chmod 600 %s)", what, path,
                     (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    if (st.st_size == 0) {
        r = cv_error(-EINVAL, "%s %s: empty", what, path);
        goto out;
    }
    if (st.st_size > CV_SECRET_MAX) {
        r = cv_error(-EFBIG, "%s %s: larger than %d bytes", what, path,
                     CV_SECRET_MAX);
        goto out;
    }
    s->alloc = (size_t)st.st_size;
    s->data = cv_secmem_alloc(s->alloc);
    if (!s->data) {
        r = cv_error_prefix(-ENOMEM, "%s %s", what, path);
        goto out;
    }
    while (got < s->alloc) {
        ssize_t n = read(fd, s->data + got, s->alloc - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = cv_error(-errno, "%s %s: %s", what, path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    s->len = got;
    if (s->len == 0)
        r = cv_error(-EINVAL, "%s %s: empty", what, path);
out:
    close(fd);
    if (r < 0)
        cv_secret_free(s);
    return r;
}

void cv_secret_free(struct cv_secret *s)
{
    if (s->data)
        cv_secmem_free(s->data, s->alloc);
    memset(s, 0, sizeof *s);
}
