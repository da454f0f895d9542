#include "secret-file.h"
#include "error.h"
#include "secmem.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cv_secret_read_file(const char *path, const char *what,
                        struct cv_secret *s)
{
    struct stat st;
    size_t got = 0;
    int fd, r = 0;

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
