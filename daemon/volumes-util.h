/* Small pieces shared by volumes.c, secrets.c and volumes-serve.c: names,
 * paths, durable file operations. */
#ifndef CRYPTVOLD_VOLUMES_UTIL_H
#define CRYPTVOLD_VOLUMES_UTIL_H

#include <stddef.h>
#include <stdint.h>

struct cvd;
struct cvd_volume_rec;

/* -EINVAL with a message ("volume \"a/b\": not a valid name ...") unless
 * name is valid; what is "volume" or "secret". */
int cvd_check_name(const char *what, const char *name);
/* DATA-DIR/volumes/NAME.img */
void cvd_volume_path(struct cvd *d, const char *name, char *buf, size_t len);
/* Creates v->path (mode 0600, never over an existing file) of size bytes,
 * making DATA-DIR/volumes if needed. */
int cvd_create_file(struct cvd *d, const struct cvd_volume_rec *v,
                    uint64_t size);
/* fsync of the file and of its directory. */
int cvd_sync_file(const char *path);
int cvd_resize_file(const char *path, uint64_t size);
int cvd_in_use_error(const char *name, const char *doing);
/* After a failure whose message is first: logs a failed undo step and puts
 * first back as the message, since that is what the caller reports. */
void cvd_undo(const char *first, int undo);
#define CVD_ERROR_MAX 512

#endif
