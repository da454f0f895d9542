/* A small pool of threads that helps one caller finish a job split into
 * parts (encrypting a large request on every core).  The caller works on
 * its own job too, so a pool of N-1 threads keeps N cores busy and a pool of
 * zero threads degrades to running every part inline. */
#ifndef CRYPTVOL_WORKERS_H
#define CRYPTVOL_WORKERS_H

struct cv_workers;

/* nthreads 0 means "one fewer than the online CPUs". */
int cv_workers_new(unsigned nthreads, struct cv_workers **out);
void cv_workers_free(struct cv_workers *w);

/* Threads in the pool, not counting callers. */
unsigned cv_workers_count(const struct cv_workers *w);

/* Runs fn(arg, i) for i in [0, nparts) and returns when all have finished.
 * Safe to call from many threads at once.  w may be NULL. */
void cv_workers_run(struct cv_workers *w, unsigned nparts,
                    void (*fn)(void *arg, unsigned part), void *arg);

#endif
