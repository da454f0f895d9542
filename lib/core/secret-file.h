/* Passphrase and key files.  A file's bytes are the secret, exactly, with no
 * newline stripping (as cryptsetup --key-file).  Files that group or others
 * can access are refused, as ssh refuses a private key. */
#ifndef CRYPTVOL_SECRET_FILE_H
#define CRYPTVOL_SECRET_FILE_H

#include <stddef.h>

#define CV_SECRET_MAX (64 * 1024)

struct cv_secret {
    char *data;         /* locked memory; not NUL-terminated */
    size_t len;
    size_t alloc;
};

/* Reads path into *s.  what names the role in messages ("passphrase file").
 * "-" is standard input, read to its end, unless it is a terminal
 * (refused: it would echo; the CLI reads a terminal itself, with echo
 * off).  Returns 0, or a negative errno with a message naming the file. */
int cv_secret_read_file(const char *path, const char *what,
                        struct cv_secret *s);
/* Reads fd to its end into locked memory, growing as it goes (each old
 * buffer wiped): empty or longer than CV_SECRET_MAX is an error naming
 * what. */
int cv_secret_read_stream(int fd, const char *what, struct cv_secret *s);

/* Wipes and frees; safe on a zeroed struct. */
void cv_secret_free(struct cv_secret *s);

#endif
