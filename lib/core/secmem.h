/* Locked memory for key material: never swapped, excluded from core dumps,
 * wiped before it is returned to the system. */
#ifndef CRYPTVOL_SECMEM_H
#define CRYPTVOL_SECMEM_H

#include <stddef.h>

/* Returns zeroed, mlock'ed memory of at least size bytes, or NULL with an
 * error message set. */
void *cv_secmem_alloc(size_t size);

/* Wipes and releases memory from cv_secmem_alloc.  NULL is ignored. */
void cv_secmem_free(void *p, size_t size);

#endif
