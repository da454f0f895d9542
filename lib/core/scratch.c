/* Per-thread scratch buffers (scratch.h).  The slots are thread-local; a
 * destructor frees them when the thread exits.  A buffer carries its
 * slot in a header before it, so cv_scratch_put needs nothing else. */
#include "scratch.h"
#include "error.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define ALIGN 64
/* The smallest buffer a slot keeps. */
#define MIN_KEEP (64 * 1024)

/* What precedes each buffer: its capacity, and its slot (-1: none, freed
 * on put). */
struct head {
    size_t cap;
    int slot;
    char pad[ALIGN - sizeof(size_t) - sizeof(int)];
};

struct slots {
    struct head *buf[CV_SCRATCH_SLOTS];   /* kept, not in use */
    unsigned char busy[CV_SCRATCH_SLOTS];
};

static __thread struct slots *mine;
static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void slots_free(void *arg)
{
    struct slots *s = arg;
    unsigned i;

    for (i = 0; i < CV_SCRATCH_SLOTS; i++)
        free(s->buf[i]);
    free(s);
}

static void key_init(void)
{
    /* Only a destructor for exiting threads: failing leaves them to leak
     * at exit, which is no reason to fail a request. */
    (void)pthread_key_create(&key, slots_free);
}

static struct slots *thread_slots(void)
{
    if (mine)
        return mine;
    pthread_once(&key_once, key_init);
    mine = calloc(1, sizeof *mine);
    if (mine && pthread_setspecific(key, mine) != 0) {
        free(mine);
        mine = NULL;
    }
    return mine;
}

static struct head *head_new(size_t len, int slot)
{
    struct head *h;

    if (len > SIZE_MAX - sizeof *h || posix_memalign((void **)&h, ALIGN,
                                                     sizeof *h + len) != 0)
        return NULL;
    h->cap = len;
    h->slot = slot;
    return h;
}

/* A free slot that keeps a buffer big enough; else an empty one; else
 * the free one with the smallest buffer (to be replaced); -1: none. */
static int pick_slot(struct slots *s, size_t len)
{
    int empty = -1, small = -1;
    unsigned i;

    for (i = 0; i < CV_SCRATCH_SLOTS; i++) {
        if (s->busy[i])
            continue;
        if (s->buf[i] && s->buf[i]->cap >= len)
            return (int)i;
        if (!s->buf[i] && empty < 0)
            empty = (int)i;
        if (s->buf[i] && (small < 0 || s->buf[i]->cap < s->buf[small]->cap))
            small = (int)i;
    }
    return empty >= 0 ? empty : small;
}

void *cv_scratch_get(size_t len)
{
    struct slots *s = len <= CV_SCRATCH_KEEP ? thread_slots() : NULL;
    int i = s ? pick_slot(s, len) : -1;
    struct head *h;

    if (i >= 0 && s->buf[i] && s->buf[i]->cap >= len) {
        s->busy[i] = 1;
        return s->buf[i] + 1;
    }
    if (i >= 0) {
        /* Too small, or none: a power of two, so that requests of
         * varying sizes do not each make a new one. */
        size_t cap = MIN_KEEP;

        while (cap < len)
            cap *= 2;
        free(s->buf[i]);
        s->buf[i] = NULL;
        len = cap;
    }
    h = head_new(len, i);
    if (!h) {
        cv_error(-ENOMEM, "out of memory for a %zu-byte buffer", len);
        return NULL;
    }
    if (i >= 0) {
        s->buf[i] = h;
        s->busy[i] = 1;
    }
    return h + 1;
}

void cv_scratch_put(void *p)
{
    struct head *h;

    if (!p)
        return;
    h = (struct head *)p - 1;
    if (h->slot < 0)
        free(h);
    else
        mine->busy[h->slot] = 0;
}

void cv_scratch_release(void)
{
    unsigned i;

    for (i = 0; mine && i < CV_SCRATCH_SLOTS; i++)
        if (!mine->busy[i]) {
            free(mine->buf[i]);
            mine->buf[i] = NULL;
        }
}

size_t cv_scratch_kept(void)
{
    size_t n = 0;
    unsigned i;

    for (i = 0; mine && i < CV_SCRATCH_SLOTS; i++)
        if (mine->buf[i] && !mine->busy[i])
            n += mine->buf[i]->cap;
    return n;
}
