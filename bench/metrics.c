/* bench-metrics: what counting one NBD request costs (metrics.h): the
 * clock read at its start and cvd_metrics_request at its end, as
 * nbd-transmit.c does, from THREADS threads (default 1, 2, 4) counting
 * requests of one volume at once, the worst case for the shared cache
 * lines.  Prints nanoseconds per request.  bench/README.md. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics.h"

struct job {
    struct cvd_metrics *m;
    struct cvd_volume_metrics *v;
    unsigned long n;
    atomic_int *go;
};

static void *run(void *arg)
{
    struct job *j = arg;

    while (!atomic_load(j->go))
        ;
    for (unsigned long i = 0; i < j->n; i++) {
        uint64_t start = cvd_metrics_now_ns();

        cvd_metrics_request(j->m, j->v, (i & 1) ? CVD_OP_READ : CVD_OP_WRITE,
                            4096, 0, start);
    }
    return NULL;
}

static double one(struct cvd_metrics *m, struct cvd_volume_metrics *v,
                  unsigned threads, unsigned long n)
{
    pthread_t t[64];
    struct job j = { .m = m, .v = v, .n = n };
    atomic_int go = 0;
    uint64_t t0, t1;

    j.go = &go;
    for (unsigned i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, run, &j);
    t0 = cvd_metrics_now_ns();
    atomic_store(&go, 1);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    t1 = cvd_metrics_now_ns();
    /* Wall time per request per thread: what each request waited. */
    return (double)(t1 - t0) / (double)n;
}

int main(int argc, char **argv)
{
    unsigned list[] = { 1, 2, 4 }, n = 3;
    unsigned long reqs = 5000000;
    struct cvd_metrics *m;
    struct cvd_volume_metrics *v;

    if (argc > 1) {
        list[0] = (unsigned)atoi(argv[1]);
        n = 1;
        if (list[0] < 1 || list[0] > 64) {
            fprintf(stderr, "usage: bench-metrics [THREADS (1-64)]\n");
            return 2;
        }
    }
    if (cvd_metrics_new(&m) < 0 || !(v = cvd_metrics_volume_get(m, "v")))
        return 1;
    one(m, v, 1, reqs / 10);            /* warm-up */
    for (unsigned i = 0; i < n; i++)
        printf("%u thread%s: %.1f ns per request counted (clock read and "
               "counters)\n", list[i], list[i] == 1 ? "" : "s",
               one(m, v, list[i], reqs));
    cvd_metrics_volume_put(m, v);
    cvd_metrics_free(m);
    return 0;
}
