/* What the layer chain's unit tests share (test-chain.c, test-chain-stress.c):
 * scratch directories, tagged blocks, small wrappers that fail the test
 * with the chain's message. */
#ifndef CRYPTVOL_TEST_CHAIN_H
#define CRYPTVOL_TEST_CHAIN_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* Each program uses some of these. */
#pragma GCC diagnostic ignored "-Wunused-function"

#include "core/error.h"
#include "store/backend.h"
#include "store/chain.h"

#define BLK CV_CHAIN_BLOCK
#define DOFF (4 * BLK)                  /* data offset of the test chains */
#define NBLK 64u                        /* data blocks */
#define RAW (DOFF + NBLK * BLK)

static char root[256];                  /* a scratch directory per test */

static void path_of(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", root, name);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "%s/test-chain.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(root));
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];

    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* Block data: the block number and a tag in every byte pair. */
static void fill(unsigned char *buf, uint64_t blk, unsigned tag)
{
    for (size_t i = 0; i < BLK; i += 8) {
        uint32_t a = (uint32_t)blk, b = tag;

        memcpy(buf + i, &a, 4);
        memcpy(buf + i + 4, &b, 4);
    }
}

#define TORN 0xffffffffu

/* The tag block blk holds (0 for zeros), TORN for a block that is not one
 * write's (torn, or another block's).  Safe in any thread. */
static unsigned tag_scan(const unsigned char *buf, uint64_t blk)
{
    static const unsigned char zero[BLK];
    uint32_t a, b, first;

    if (!memcmp(buf, zero, BLK))
        return 0;
    memcpy(&first, buf + 4, 4);
    for (size_t i = 0; i < BLK; i += 8) {
        memcpy(&a, buf + i, 4);
        memcpy(&b, buf + i + 4, 4);
        if (a != (uint32_t)blk || b != first)
            return TORN;
    }
    return first;
}

static unsigned tag_of(const unsigned char *buf, uint64_t blk)
{
    unsigned t = tag_scan(buf, blk);

    if (t == TORN)
        fail_msg("block %llu is torn or misplaced", (unsigned long long)blk);
    return t;
}

static uint64_t at(unsigned blk)
{
    return DOFF + (uint64_t)blk * BLK;
}

static void put(struct cv_chain *c, unsigned blk, unsigned tag)
{
    unsigned char buf[BLK];

    fill(buf, at(blk) / BLK, tag);
    if (cv_chain_write(c, buf, BLK, at(blk), 0) != 0)
        fail_msg("write of block %u: %s", blk, cv_last_error());
}

/* What runs the read reported, as a string of one char per block:
 * '.' hole, '0'.. the format. */
struct runs {
    char s[NBLK + 1];
    size_t n;
};

static int record_run(void *arg, size_t off, size_t len, int format)
{
    struct runs *r = arg;

    assert_int_equal(off % BLK, 0);
    assert_int_equal(len % BLK, 0);
    assert_int_equal(off / BLK, r->n);      /* in order, no gaps */
    for (size_t i = 0; i < len / BLK; i++)
        r->s[r->n++] = format == CV_CHAIN_HOLE ? '.' : (char)('0' + format);
    r->s[r->n] = '\0';
    return 0;
}

/* The tag of block blk of the view under below. */
static unsigned get_below(struct cv_chain *c, unsigned blk, unsigned below)
{
    unsigned char buf[BLK];

    if (cv_chain_read(c, buf, BLK, at(blk), below, NULL, NULL) != 0)
        fail_msg("read of block %u: %s", blk, cv_last_error());
    return tag_of(buf, at(blk) / BLK);
}

static unsigned get(struct cv_chain *c, unsigned blk)
{
    return get_below(c, blk, CV_CHAIN_TOP);
}

static struct cv_chain *make(const char *name)
{
    struct cv_chain *c;
    char dir[300];

    path_of(dir, sizeof dir, name);
    if (cv_chain_create(dir, DOFF, RAW, NULL) != 0)
        fail_msg("create: %s", cv_last_error());
    if (cv_chain_open(dir, NULL, 0, &c) != 0)
        fail_msg("open: %s", cv_last_error());
    return c;
}

static struct cv_chain *reopen(const char *name, const char *snap,
                               unsigned flags)
{
    struct cv_chain *c;
    char dir[300];

    path_of(dir, sizeof dir, name);
    if (cv_chain_open(dir, snap, flags, &c) != 0)
        fail_msg("open %s@%s: %s", name, snap ? snap : "", cv_last_error());
    return c;
}

static int file_exists(const char *name, const char *file)
{
    char p[400];
    struct stat st;

    snprintf(p, sizeof p, "%s/%s/%s", root, name, file);
    return stat(p, &st) == 0;
}

#endif
