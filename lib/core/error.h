/* Error reporting for libcryptvol.
 *
 * Functions return 0 or a negative errno and leave a one-line message saying
 * what failed and on what ("image vm.img: keyslot 1: wrong passphrase").  The
 * message is per thread, like libnbd's nbd_get_error(), so concurrent callers
 * never see each other's errors.
 */
#ifndef CRYPTVOL_ERROR_H
#define CRYPTVOL_ERROR_H

/* A wrong passphrase or key; distinct from every I/O errno. */
#define CV_EWRONGKEY EKEYREJECTED

/* Sets the thread's message and returns code (a negative errno). */
int cv_error(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefixes the thread's current message with context ("image x: ...") and
 * returns code, so callers add what they know without losing the cause. */
int cv_error_prefix(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The last message set on this thread ("" if none). */
const char *cv_last_error(void);

void cv_clear_error(void);

#endif
