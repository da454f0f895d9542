/* A layer's map: which 4 KiB blocks it holds, as a two-level bitmap
 * (chain-internal.h; the memory bound is in docs/store.md).  Readers test
 * bits while writers set them, so every bit and leaf pointer is accessed
 * atomically; the pointer array itself changes only under the chain's
 * exclusive lock (chain_map_resize). */
#include "chain-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t blocks_of(uint64_t size)
{
    return (size + CV_CHAIN_BLOCK - 1) / CV_CHAIN_BLOCK;
}

static size_t leaves_of(uint64_t nblocks)
{
    return (size_t)((nblocks + MAP_LEAF_BITS - 1) / MAP_LEAF_BITS);
}

int chain_map_init(struct chain_map *m, uint64_t size)
{
    m->nblocks = blocks_of(size);
    m->nleaves = leaves_of(m->nblocks);
    m->leaves = NULL;
    if (m->nleaves && !(m->leaves = calloc(m->nleaves, sizeof *m->leaves)))
        return -ENOMEM;
    return 0;
}

void chain_map_free(struct chain_map *m)
{
    for (size_t i = 0; i < m->nleaves; i++)
        free(m->leaves[i]);
    free(m->leaves);
    m->leaves = NULL;
    m->nleaves = 0;
    m->nblocks = 0;
}

static uint64_t *leaf_get(const struct chain_map *m, size_t i)
{
    return __atomic_load_n(&m->leaves[i], __ATOMIC_ACQUIRE);
}

int chain_map_resize(struct chain_map *m, uint64_t size)
{
    uint64_t nblocks = blocks_of(size);
    size_t n = leaves_of(nblocks);

    if (n > m->nleaves) {
        uint64_t **p = realloc(m->leaves, n * sizeof *p);

        if (!p)
            return -ENOMEM;
        for (size_t i = m->nleaves; i < n; i++)
            p[i] = NULL;
        m->leaves = p;
    } else {
        /* A shrink keeps the array (no realloc to fail): its tail is
         * unused past nleaves. */
        for (size_t i = n; i < m->nleaves; i++) {
            free(m->leaves[i]);
            m->leaves[i] = NULL;
        }
    }
    m->nleaves = n;
    /* What is past the new end is dropped, so a later grow does not bring
     * it back (past the old end nothing was ever set). */
    if (nblocks < m->nblocks)
        chain_map_clear(m, nblocks, (uint64_t)n * MAP_LEAF_BITS - nblocks);
    m->nblocks = nblocks;
    return 0;
}

int chain_map_reserve(struct chain_map *m, uint64_t blk, uint64_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = (size_t)(blk / MAP_LEAF_BITS);
         i <= (size_t)((blk + n - 1) / MAP_LEAF_BITS) && i < m->nleaves; i++) {
        uint64_t *leaf, *expected = NULL;

        if (leaf_get(m, i))
            continue;
        if (!(leaf = calloc(1, MAP_LEAF_BYTES)))
            return -ENOMEM;
        /* Two writers may reserve one region at once: one leaf wins. */
        if (!__atomic_compare_exchange_n(&m->leaves[i], &expected, leaf, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            free(leaf);
    }
    return 0;
}

/* Sets or clears the bits [blk, blk+n), a word at a time. */
static void map_words(struct chain_map *m, uint64_t blk, uint64_t n, int set)
{
    uint64_t end = blk + n;

    if (end > (uint64_t)m->nleaves * MAP_LEAF_BITS)
        end = (uint64_t)m->nleaves * MAP_LEAF_BITS;
    while (blk < end) {
        uint64_t *leaf = leaf_get(m, (size_t)(blk / MAP_LEAF_BITS));
        uint64_t bit = blk % 64, cnt = 64 - bit;
        uint64_t mask;

        if (cnt > end - blk)
            cnt = end - blk;
        mask = (cnt == 64 ? ~0ull : ((1ull << cnt) - 1)) << bit;
        if (leaf) {
            uint64_t *w = &leaf[(blk % MAP_LEAF_BITS) / 64];

            if (set)
                __atomic_fetch_or(w, mask, __ATOMIC_RELEASE);
            else
                __atomic_fetch_and(w, ~mask, __ATOMIC_RELEASE);
        }
        blk += cnt;
    }
}

void chain_map_set(struct chain_map *m, uint64_t blk, uint64_t n)
{
    map_words(m, blk, n, 1);
}

void chain_map_clear(struct chain_map *m, uint64_t blk, uint64_t n)
{
    map_words(m, blk, n, 0);
}

int chain_map_test(const struct chain_map *m, uint64_t blk)
{
    const uint64_t *leaf;

    if (blk >= m->nblocks)
        return 0;
    leaf = leaf_get(m, (size_t)(blk / MAP_LEAF_BITS));
    if (!leaf)
        return 0;
    return (__atomic_load_n(&leaf[(blk % MAP_LEAF_BITS) / 64],
                            __ATOMIC_ACQUIRE) >> (blk % 64)) & 1;
}

uint64_t chain_map_run(const struct chain_map *m, uint64_t blk, uint64_t n,
                       int value)
{
    uint64_t done = 0;

    while (done < n) {
        uint64_t b = blk + done, left = n - done;
        const uint64_t *leaf;
        uint64_t w, bit, ones;

        if (b >= m->nblocks)    /* past the end: holds nothing */
            return value ? done : n;
        leaf = leaf_get(m, (size_t)(b / MAP_LEAF_BITS));
        if (!leaf) {
            uint64_t rest = MAP_LEAF_BITS - b % MAP_LEAF_BITS;

            if (value)
                return done;
            done += rest < left ? rest : left;
            continue;
        }
        w = __atomic_load_n(&leaf[(b % MAP_LEAF_BITS) / 64], __ATOMIC_ACQUIRE);
        bit = b % 64;
        w >>= bit;
        if (!value)
            w = ~w;
        /* Trailing ones of w: blocks from b with the value. */
        ones = ~w == 0 ? 64 - bit : (uint64_t)__builtin_ctzll(~w);
        if (ones > 64 - bit)
            ones = 64 - bit;
        if (b + ones > m->nblocks && value)
            ones = m->nblocks - b;
        if (ones >= left)
            return n;
        done += ones;
        if (ones < 64 - bit)
            return done;
    }
    return n;
}

uint64_t chain_map_count(const struct chain_map *m, uint64_t blk)
{
    uint64_t count = 0;

    for (size_t i = 0; i < m->nleaves; i++) {
        const uint64_t *leaf = leaf_get(m, i);

        if (!leaf)
            continue;
        for (size_t w = 0; w < MAP_LEAF_WORDS; w++) {
            uint64_t first = (uint64_t)i * MAP_LEAF_BITS + w * 64;
            uint64_t bits = __atomic_load_n(&leaf[w], __ATOMIC_ACQUIRE);

            if (first + 64 <= blk)
                continue;
            if (first < blk)
                bits &= ~0ull << (blk - first);
            count += (uint64_t)__builtin_popcountll(bits);
        }
    }
    return count;
}

int chain_map_scan(struct chain_map *m, int fd, uint64_t from, uint64_t to)
{
    uint64_t end = (uint64_t)m->nblocks * CV_CHAIN_BLOCK;
    off_t pos = (off_t)from;

    if (to < end)
        end = to;
    while ((uint64_t)pos < end) {
        off_t data = lseek(fd, pos, SEEK_DATA), hole;
        uint64_t b0, b1;
        int r;

        if (data < 0 && errno == ENXIO)
            break;              /* no data from pos to the end */
        if (data < 0)
            return -errno;
        if ((uint64_t)data >= end)
            break;
        hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0)
            return -errno;
        if ((uint64_t)hole > end)
            hole = (off_t)end;
        b0 = (uint64_t)data / CV_CHAIN_BLOCK;
        b1 = ((uint64_t)hole + CV_CHAIN_BLOCK - 1) / CV_CHAIN_BLOCK;
        if ((r = chain_map_reserve(m, b0, b1 - b0)) < 0)
            return r;
        chain_map_set(m, b0, b1 - b0);
        pos = hole;
    }
    return 0;
}

size_t chain_map_memory(const struct chain_map *m)
{
    size_t bytes = m->nleaves * sizeof *m->leaves;

    for (size_t i = 0; i < m->nleaves; i++)
        if (leaf_get(m, i))
            bytes += MAP_LEAF_BYTES;
    return bytes;
}
