#include "luks.h"
#include "store/backend.h"
#include "core/error.h"
#include "luks-internal.h"
#include "core/secmem.h"

#include <errno.h>
#include <json-c/json.h>
#include <libcryptsetup.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MiB (1024ull * 1024)
/* Copied on every load: the LUKS1 header and key material, and the LUKS2
 * headers of every size cryptsetup makes (both copies, so a damaged primary
 * falls back), with the default 16 MiB of keyslots. */
#define HDR_PROBE (16 * MiB)
/* The memfd is sparse; this bounds the header area we mirror (LUKS2
 * keyslot areas are at most 128 MiB). */
#define HDR_MAX (256 * MiB)
#define BLOCK 4096
/* LUKS2 binary header (the LUKS2 on-disk format): the magic, a big-endian
 * 16-bit version at 6 and the big-endian 64-bit size of one header copy
 * (binary header and JSON area) at 8.  cryptsetup makes copies of 16 KiB
 * to 4 MiB, each a power of two. */
#define LUKS2_HDR_SIZE_OFF 8
#define LUKS2_HDR_MIN (16 * 1024ull)
#define LUKS2_HDR_MAX (4 * MiB)
/* The LUKS on-disk formats (1 and 2) split a keyslot's key material into
 * this many stripes (LUKS_STRIPES); libcryptsetup offers no other. */
#define LUKS_AF_STRIPES 4000
/* libcryptsetup's limit on a LUKS2 keyslots area. */
#define LUKS2_KEYSLOTS_MAX (128 * MiB)

double luks_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void quiet_log(int level, const char *msg, void *usrptr)
{
    (void)level, (void)msg, (void)usrptr;
}

static void luks_log(int level, const char *msg, void *usrptr)
{
    struct cv_luks *l = usrptr;
    size_t n;

    if (level != CRYPT_LOG_ERROR)
        return;
    snprintf(l->log, sizeof l->log, "%s", msg);
    n = strlen(l->log);
    while (n > 0 && (l->log[n - 1] == '\n' || l->log[n - 1] == '.'))
        l->log[--n] = '\0';
}

static void global_init(void)
{
    /* The memfd is ours alone; libcryptsetup's lock files under
     * /run/cryptsetup would only get in the way. */
    crypt_metadata_locking(NULL, 0);
    crypt_set_log_callback(NULL, quiet_log, NULL);
    /* A token's type comes from the (untrusted) header; libcryptsetup
     * would otherwise look for a plugin library named after it on every
     * token lookup.  cryptvol's tokens need no plugin. */
    crypt_token_external_disable();
}

const char *luks_cs_msg(struct cv_luks *l, int r)
{
    return l->log[0] ? l->log : strerror(-r);
}

int luks_is_luks2(struct cv_luks *l)
{
    const char *type = crypt_get_type(l->cd);

    return type && strcmp(type, CRYPT_LUKS2) == 0;
}

/* Through a handle from cv_luks_load_metadata the keyslot areas read as
 * zeros: an unlock would fail as a wrong key, and a full write-back would
 * zero every keyslot on the store.  Refuse both plainly. */
int luks_need_keyslots(struct cv_luks *l, const char *what)
{
    if (!l->metadata_only)
        return 0;
    return cv_error(-EINVAL, "%s: cannot %s: the header was loaded without "
                    "its keyslot areas (metadata only)", l->b->name, what);
}

static int luks_new(struct cv_backend *b, uint64_t memfd_size,
                    struct cv_luks **out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct cv_luks *l;
    char path[64];
    int r;

    pthread_once(&once, global_init);
    l = calloc(1, sizeof *l);
    if (!l)
        return cv_error(-ENOMEM, "%s: out of memory", b->name);
    l->b = b;
    l->memfd = memfd_create("cryptvol-luks-header", MFD_CLOEXEC);
    if (l->memfd < 0) {
        r = cv_error(-errno, "%s: memfd_create: %s", b->name, strerror(errno));
        goto fail;
    }
    if (ftruncate(l->memfd, (off_t)memfd_size) != 0) {
        r = cv_error(-errno, "%s: header buffer: %s", b->name, strerror(errno));
        goto fail;
    }
    r = cv_backend_size(b, &l->raw_size);
    if (r < 0)
        goto fail;
    snprintf(path, sizeof path, "/proc/self/fd/%d", l->memfd);
    r = crypt_init(&l->cd, path);
    if (r < 0) {
        r = cv_error(r, "%s: libcryptsetup: %s", b->name, strerror(-r));
        goto fail;
    }
    crypt_set_log_callback(l->cd, luks_log, l);
    *out = l;
    return 0;
fail:
    cv_luks_free(l);
    return r;
}

void cv_luks_free(struct cv_luks *l)
{
    if (!l)
        return;
    if (l->cd)
        crypt_free(l->cd);
    if (l->memfd >= 0)
        close(l->memfd);
    free(l);
}

static int all_zero(const char *p, size_t len)
{
    return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/* Buffer size for copying [from, to): a MiB at most, and no more than the
 * range, so that a header-only write-back of some KiB does not map and
 * unmap megabytes (a third of a token rewrap's time, measured). */
static size_t io_chunk(uint64_t from, uint64_t to)
{
    return to > from && to - from < MiB ? (size_t)(to - from) : MiB;
}

/* Mirrors [from, to) of the store into the memfd. */
static int copy_in(struct cv_luks *l, uint64_t from, uint64_t to)
{
    char *buf = malloc(io_chunk(from, to));
    int r = 0;

    if (!buf)
        return cv_error(-ENOMEM, "%s: out of memory", l->b->name);
    while (from < to) {
        size_t n = to - from < MiB ? (size_t)(to - from) : MiB;
        r = cv_backend_pread(l->b, buf, n, from);
        if (r < 0)
            break;
        if (!all_zero(buf, n) && pwrite(l->memfd, buf, n, (off_t)from) != (ssize_t)n) {
            r = cv_error(-EIO, "%s: header buffer: %s", l->b->name,
                         strerror(errno));
            break;
        }
        from += n;
    }
    free(buf);
    return r;
}

int luks_flush(struct cv_luks *l)
{
    return l->deferred_flush ? 0 : cv_backend_flush(l->b);
}

/* Writes the blocks of buf (n bytes at from) that differ from the store's
 * copy in theirs, each run of them in one write: a new 2 MiB keyslots
 * area of random bytes is a few writes, not 500. */
static int write_runs(struct cv_luks *l, const char *mine, const char *theirs,
                      size_t n, uint64_t from)
{
    size_t off = 0, run = 0, len;
    int r = 0;

    while (r == 0 && off < n) {
        len = n - off < BLOCK ? n - off : BLOCK;
        if (memcmp(mine + off, theirs + off, len) != 0) {
            off += len;         /* the run grows */
            continue;
        }
        if (off > run)
            r = cv_backend_pwrite(l->b, mine + run, off - run, from + run, 0);
        off += len;
        run = off;
    }
    if (r == 0 && off > run)
        r = cv_backend_pwrite(l->b, mine + run, off - run, from + run, 0);
    return r;
}

int luks_write_back(struct cv_luks *l, uint64_t from, uint64_t to)
{
    size_t chunk = io_chunk(from, to);
    char *mine = malloc(chunk), *theirs = malloc(chunk);
    int r = 0;

    if (!mine || !theirs) {
        r = cv_error(-ENOMEM, "%s: out of memory", l->b->name);
        goto out;
    }
    while (from < to && r == 0) {
        size_t n = to - from < MiB ? (size_t)(to - from) : MiB;
        if (pread(l->memfd, mine, n, (off_t)from) != (ssize_t)n) {
            r = cv_error(-EIO, "%s: header buffer: %s", l->b->name,
                         strerror(errno));
            break;
        }
        if (l->store_zero)
            memset(theirs, 0, n);   /* a new store: nothing to read */
        else
            r = cv_backend_pread(l->b, theirs, n, from);
        if (r == 0)
            r = write_runs(l, mine, theirs, n, from);
        from += n;
    }
out:
    free(mine);
    free(theirs);
    return r;
}

/* A partly mirrored header: the areas loaded (a destroyed keyslot's
 * wiped area among them) and those the change made (a new keyslot's). */
static int write_back_areas(struct cv_luks *l)
{
    struct luks_area now[LUKS_MAX_AREAS];
    size_t n, i;
    int r = luks_keyslot_areas(l, now, LUKS_MAX_AREAS, &n);

    for (i = 0; r == 0 && i < l->nloaded; i++)
        r = luks_write_back(l, l->loaded[i].off,
                            l->loaded[i].off + l->loaded[i].len);
    for (i = 0; r == 0 && i < n; i++)
        r = luks_write_back(l, now[i].off, now[i].off + now[i].len);
    return r;
}

/* A crash in between loses at most the new keyslot, never an old one. */
int luks_commit(struct cv_luks *l)
{
    uint64_t data = crypt_get_data_offset(l->cd) * 512, meta = BLOCK, ks;
    int r;

    r = luks_need_keyslots(l, "write keyslots");
    if (r < 0)
        return r;
    if (luks_is_luks2(l) &&
        crypt_get_metadata_size(l->cd, &meta, &ks) == 0)
        meta *= 2;
    if (data > HDR_MAX)
        data = HDR_MAX;
    if (meta > data)
        meta = data;
    r = l->partial ? write_back_areas(l) : luks_write_back(l, meta, data);
    if (r == 0)
        r = luks_flush(l);
    if (r == 0)
        r = luks_write_back(l, 0, meta);
    if (r == 0)
        r = luks_flush(l);
    l->store_zero = 0;
    return r < 0 ? cv_error_prefix(r, "%s: writing LUKS header", l->b->name) : 0;
}

int luks_set_pbkdf(struct cv_luks *l, const char *type,
                   const struct cv_pbkdf *p)
{
    const struct crypt_pbkdf_type *def = crypt_get_pbkdf_default(type);
    struct crypt_pbkdf_type pb;
    int r;

    if (!p || (!p->type && !p->iterations && !p->memory_kib && !p->time_ms))
        return 0;
    pb = *def;
    if (p->type) {
        if (strcmp(p->type, "pbkdf2") != 0 && strcmp(type, CRYPT_LUKS1) == 0)
            return cv_error(-EINVAL, "%s: LUKS1 supports only the pbkdf2 "
                            "key derivation, not %s", l->b->name, p->type);
        pb.type = p->type;
    }
    if (strcmp(pb.type, CRYPT_KDF_PBKDF2) == 0) {
        pb.max_memory_kb = 0;
        pb.parallel_threads = 0;
    } else if (!pb.max_memory_kb) {
        pb.max_memory_kb = def->max_memory_kb ? def->max_memory_kb : 1048576;
        pb.parallel_threads = def->parallel_threads ? def->parallel_threads : 4;
    }
    if (p->memory_kib)
        pb.max_memory_kb = p->memory_kib;
    if (p->time_ms)
        pb.time_ms = p->time_ms;
    if (p->iterations) {
        pb.iterations = p->iterations;
        pb.flags |= CRYPT_PBKDF_NO_BENCHMARK;
    }
    r = crypt_set_pbkdf_type(l->cd, &pb);
    if (r < 0)
        return cv_error(r, "%s: key derivation %s: %s", l->b->name, pb.type,
                        luks_cs_msg(l, r));
    return 0;
}

uint64_t cv_luks_keyslot_area_size(size_t key_bytes)
{
    uint64_t n = (uint64_t)key_bytes * LUKS_AF_STRIPES;

    return (n + BLOCK - 1) / BLOCK * BLOCK;
}

/* The LUKS2 header copies (binary header and JSON area) at their default
 * size, which a format with keyslots_size set keeps. */
#define LUKS2_HDR_DEFAULT (16 * 1024ull)
/* libcryptsetup's default keyslots area: 16 MiB less the two copies. */
#define LUKS2_KEYSLOTS_DEFAULT (16 * MiB - 2 * LUKS2_HDR_DEFAULT)
/* LUKS1: a 4 KiB header, then 8 keyslots, each 4 KiB aligned. */
#define LUKS1_SLOTS 8

/* The keyslots area of a LUKS2 header whose data starts at data_offset:
 * p->keyslots keyslots if asked, else all the room up to the data (at
 * most libcryptsetup's default); 0 if it does not fit one keyslot, or
 * the keyslots asked. */
static uint64_t luks2_room(const struct cv_format_params *p, uint64_t *need)
{
    uint64_t slot = cv_luks_keyslot_area_size(p->key_bits / 4);
    uint64_t want = p->keyslots ? p->keyslots * slot : slot;
    uint64_t room = p->data_offset > 2 * LUKS2_HDR_DEFAULT ?
                    p->data_offset - 2 * LUKS2_HDR_DEFAULT : 0;

    *need = 2 * LUKS2_HDR_DEFAULT + want;
    room = room / BLOCK * BLOCK;
    if (room < want)
        return 0;
    if (p->keyslots)
        return want;
    return room < LUKS2_KEYSLOTS_DEFAULT ? room : LUKS2_KEYSLOTS_DEFAULT;
}

/* The data starts exactly at p->data_offset (a clone's header made to fit
 * its parent's): set before the format, with the keyslots area that fills
 * the room (LUKS2), or refused in bytes if the header cannot fit. */
static int set_data_offset(struct cv_luks *l, const struct cv_format_params *p)
{
    uint64_t need, ks = 0;
    int r;

    if (p->data_offset % BLOCK)
        return cv_error(-EINVAL, "%s: a data offset of %llu bytes: not a "
                        "multiple of %u", l->b->name,
                        (unsigned long long)p->data_offset, BLOCK);
    if (p->luks_version == 1)
        need = BLOCK + LUKS1_SLOTS *
               cv_luks_keyslot_area_size(p->key_bits / 4);
    else
        ks = luks2_room(p, &need);
    if (p->data_offset < need || (p->luks_version == 2 && ks == 0))
        return cv_error(-ENOSPC, "%s: a LUKS%d header for AES-%u%s needs %llu "
                        "bytes; the data must start at %llu", l->b->name,
                        p->luks_version, p->key_bits,
                        p->keyslots ? " with the keyslots asked" : "",
                        (unsigned long long)need,
                        (unsigned long long)p->data_offset);
    if (ks && (r = crypt_set_metadata_size(l->cd, 0, ks)) < 0)
        return cv_error(r, "%s: keyslots area of %llu bytes: %s", l->b->name,
                        (unsigned long long)ks, luks_cs_msg(l, r));
    r = crypt_set_data_offset(l->cd, p->data_offset / 512);
    if (r < 0)
        return cv_error(r, "%s: data offset %llu: %s", l->b->name,
                        (unsigned long long)p->data_offset, luks_cs_msg(l, r));
    return 0;
}

/* A keyslots area of p->keyslots keyslots (LUKS2), set before the format
 * that lays it out; nothing to do for the default area. */
static int set_keyslots_area(struct cv_luks *l, const struct cv_format_params *p)
{
    uint64_t size = p->keyslots * cv_luks_keyslot_area_size(p->key_bits / 4);
    int r;

    if (!p->keyslots && !p->data_offset)
        return 0;
    if (p->keyslots && p->luks_version != 2)
        return cv_error(-EINVAL, "%s: a keyslots area of %u keyslots: LUKS1 "
                        "has a fixed layout of 8", l->b->name, p->keyslots);
    if (p->keyslots > CV_LUKS_MAX_SLOTS || size > LUKS2_KEYSLOTS_MAX)
        return cv_error(-EINVAL, "%s: a keyslots area of %u keyslots (1 to "
                        "%d)", l->b->name, p->keyslots, CV_LUKS_MAX_SLOTS);
    if (p->data_offset)
        return set_data_offset(l, p);
    r = crypt_set_metadata_size(l->cd, 0, size);
    if (r < 0)
        return cv_error(r, "%s: keyslots area of %llu bytes: %s", l->b->name,
                        (unsigned long long)size, luks_cs_msg(l, r));
    return 0;
}

int cv_luks_format(struct cv_backend *b, const struct cv_format_params *p,
                   const char *pass, size_t passlen)
{
    struct cv_luks *l = NULL;
    int r = cv_luks_format_open(b, p, pass, passlen, &l);

    cv_luks_free(l);
    return r;
}

int cv_luks_format_open(struct cv_backend *b,
                        const struct cv_format_params *p, const char *pass,
                        size_t passlen, struct cv_luks **out)
{
    struct crypt_params_luks2 p2 = { 0 };
    struct crypt_params_luks1 p1 = { .hash = "sha256" };
    const char *type = p->luks_version == 1 ? CRYPT_LUKS1 : CRYPT_LUKS2;
    unsigned ss = p->sector_size ? p->sector_size :
                  p->luks_version == 1 ? 512 : 4096;
    struct cv_luks *l = NULL;
    uint64_t need;
    int r;

    if (p->luks_version != 1 && p->luks_version != 2)
        return cv_error(-EINVAL, "%s: LUKS version %d", b->name, p->luks_version);
    if (p->key_bits != 128 && p->key_bits != 256)
        return cv_error(-EINVAL, "%s: AES key of %u bits (use 128 or 256)",
                        b->name, p->key_bits);
    if (ss < 512 || ss > 4096 || (ss & (ss - 1)) ||
        (p->luks_version == 1 && ss != 512))
        return cv_error(-EINVAL, "%s: sector size %u (LUKS2: 512, 1024, 2048 "
                        "or 4096; LUKS1: 512)", b->name, ss);
    p2.sector_size = ss;
    r = luks_new(b, HDR_MAX, &l);
    if (r < 0)
        return r;
    l->deferred_flush = l->store_zero = p->new_store;
    r = luks_set_pbkdf(l, type, &p->pbkdf);
    if (r == 0)
        r = set_keyslots_area(l, p);
    if (r < 0)
        goto out;
    r = crypt_format(l->cd, type, "aes", "xts-plain64", NULL, NULL,
                     p->key_bits / 4, p->luks_version == 1 ? (void *)&p1 : &p2);
    if (r < 0) {
        r = cv_error(r, "%s: format: %s", b->name, luks_cs_msg(l, r));
        goto out;
    }
    if (p->data_offset && crypt_get_data_offset(l->cd) * 512 != p->data_offset) {
        r = cv_error(-EIO, "%s: format put the data at %llu, not at the %llu "
                     "asked", b->name,
                     (unsigned long long)(crypt_get_data_offset(l->cd) * 512),
                     (unsigned long long)p->data_offset);
        goto out;
    }
    need = crypt_get_data_offset(l->cd) * 512 + ss;
    if (l->raw_size < need) {
        char hint[32];
        snprintf(hint, sizeof hint, "%llu", (unsigned long long)need);
        r = cv_error(-ENOSPC, "%s: %llu bytes is too small for a LUKS%d header "
                     "and one sector (needs at least %s bytes)", b->name,
                     (unsigned long long)l->raw_size, p->luks_version, hint);
        goto out;
    }
    l->keyslot_seconds = luks_now();
    r = crypt_keyslot_add_by_volume_key(l->cd, CRYPT_ANY_SLOT, NULL, 0,
                                        pass, passlen);
    l->keyslot_seconds = luks_now() - l->keyslot_seconds;
    if (r < 0) {
        r = cv_error(r, "%s: adding keyslot: %s", b->name, luks_cs_msg(l, r));
        goto out;
    }
    r = luks_commit(l);
out:
    if (r < 0)
        cv_luks_free(l);
    else
        *out = l;
    return r < 0 ? r : 0;
}

/* Looks for a LUKS primary magic at 0 or a LUKS2 secondary magic where
 * cryptsetup places one, to tell "damaged" from "never was LUKS". */
int cv_luks_probe(struct cv_backend *b)
{
    static const unsigned char primary[6] = { 'L', 'U', 'K', 'S', 0xba, 0xbe };
    static const unsigned char secondary[6] = { 'S', 'K', 'U', 'L', 0xba, 0xbe };
    unsigned char buf[6];
    uint64_t size, off;
    int r;

    r = cv_backend_size(b, &size);
    if (r < 0)
        return r;
    if (size < sizeof buf)
        return 0;
    r = cv_backend_pread(b, buf, sizeof buf, 0);
    if (r < 0 || memcmp(buf, primary, sizeof buf) == 0)
        return r < 0 ? r : 1;
    for (off = 0x4000; off <= 0x400000 && off + sizeof buf <= size; off *= 2) {
        r = cv_backend_pread(b, buf, sizeof buf, off);
        if (r < 0 || memcmp(buf, secondary, sizeof buf) == 0)
            return r < 0 ? r : 1;
    }
    return 0;
}

static int check_supported(struct cv_luks *l)
{
    const char *cipher = crypt_get_cipher(l->cd);
    const char *mode = crypt_get_cipher_mode(l->cd);
    int ss = crypt_get_sector_size(l->cd);
    uint64_t data = crypt_get_data_offset(l->cd) * 512;

    if (!cipher || !mode || strcmp(cipher, "aes") != 0 ||
        strcmp(mode, "xts-plain64") != 0)
        return cv_error(-ENOTSUP, "%s: cipher %s-%s is not supported "
                        "(cryptvol serves aes-xts-plain64)", l->b->name,
                        cipher ? cipher : "?", mode ? mode : "?");
    if (ss < 512 || ss > 4096)
        return cv_error(-ENOTSUP, "%s: sector size %d is not supported",
                        l->b->name, ss);
    if (l->raw_size < data)
        return cv_error(-EINVAL, "%s: truncated: %llu bytes, but the LUKS "
                        "header puts the data at offset %llu", l->b->name,
                        (unsigned long long)l->raw_size,
                        (unsigned long long)data);
    return 0;
}

static int luks2_copy_size(struct cv_backend *b, uint64_t raw, uint64_t *size);

/* Mirrors the keyslot areas the metadata lists; -EAGAIN (no message) when
 * one lies outside the header area, for the full load to judge. */
static int copy_areas(struct cv_luks *l, uint64_t copy, uint64_t raw)
{
    uint64_t data = crypt_get_data_offset(l->cd) * 512;
    size_t i;
    int r = luks_keyslot_areas(l, l->loaded, LUKS_MAX_AREAS, &l->nloaded);

    if (r < 0)
        return -EAGAIN;
    for (i = 0; i < l->nloaded; i++) {
        const struct luks_area *a = &l->loaded[i];
        if (a->off < 2 * copy || a->len > HDR_MAX || a->off > HDR_MAX ||
            a->off + a->len > data || a->off + a->len > raw)
            return -EAGAIN;
    }
    for (i = 0; r == 0 && i < l->nloaded; i++)
        r = copy_in(l, l->loaded[i].off, l->loaded[i].off + l->loaded[i].len);
    return r;
}

/* A LUKS2 header as it usually is: both copies and the keyslot areas,
 * no more.  -EAGAIN (no message) for anything unusual, which the full
 * load then handles and explains. */
static int load_partial(struct cv_backend *b, uint64_t raw,
                        struct cv_luks **out)
{
    struct cv_luks *l = NULL;
    uint64_t copy = 0, meta = 0, ks;
    int r;

    r = luks2_copy_size(b, raw, &copy);
    if (r < 0 || copy == 0 || raw < 2 * copy)
        return r < 0 ? r : -EAGAIN;
    r = luks_new(b, HDR_MAX, &l);
    if (r < 0)
        return r;
    r = copy_in(l, 0, 2 * copy);
    if (r == 0 && (crypt_load(l->cd, CRYPT_LUKS2, NULL) < 0 ||
                   crypt_get_metadata_size(l->cd, &meta, &ks) < 0 ||
                   meta != copy))
        r = -EAGAIN;
    if (r == 0)
        r = copy_areas(l, copy, raw);
    if (r == 0) {
        l->partial = 1;
        r = check_supported(l);
    }
    if (r < 0)
        cv_luks_free(l);
    else
        *out = l;
    return r;
}

int cv_luks_load(struct cv_backend *b, struct cv_luks **out)
{
    struct cv_luks *l = NULL;
    uint64_t raw, probe, data;
    int r;

    r = cv_backend_size(b, &raw);
    if (r < 0)
        return r;
    if (raw < BLOCK)
        return cv_error(-EINVAL, "%s: %llu bytes is too small to hold a LUKS "
                        "header", b->name, (unsigned long long)raw);
    r = load_partial(b, raw, out);
    if (r != -EAGAIN)
        return r;
    /* The memfd is sparse and as large as any header area: libcryptsetup
     * then loads the header of a store cut short of its data offset, and
     * check_supported() reports it as truncated, not as damaged. */
    r = luks_new(b, HDR_MAX, &l);
    if (r < 0)
        return r;
    probe = raw < HDR_PROBE ? raw : HDR_PROBE;
    r = copy_in(l, 0, probe);
    if (r < 0)
        goto out;
    r = crypt_load(l->cd, CRYPT_LUKS, NULL);
    if (r < 0) {
        /* With the primary's magic gone, only an explicit LUKS2 load looks
         * for the secondary copy. */
        r = crypt_load(l->cd, CRYPT_LUKS2, NULL);
    }
    if (r < 0) {
        if (cv_luks_probe(b) > 0)
            r = cv_error(-EINVAL, "%s: LUKS header damaged: %s", b->name,
                         l->log[0] ? l->log : "no valid primary or "
                         "secondary header copy");
        else
            r = cv_error(-EINVAL, "%s: not a LUKS image (no LUKS1 or LUKS2 "
                         "header found)", b->name);
        goto out;
    }
    data = crypt_get_data_offset(l->cd) * 512;
    if (data > probe && raw > probe)
        r = copy_in(l, probe, data < raw ? (data < HDR_MAX ? data : HDR_MAX)
                                         : (raw < HDR_MAX ? raw : HDR_MAX));
    if (r == 0)
        r = check_supported(l);
out:
    if (r < 0)
        cv_luks_free(l);
    else
        *out = l;
    return r;
}

/* The size of one LUKS2 header copy from the primary binary header, or 0
 * when the store does not start with a LUKS2 header of a size cryptsetup
 * makes (LUKS1, a damaged primary, not LUKS at all). */
static int luks2_copy_size(struct cv_backend *b, uint64_t raw, uint64_t *size)
{
    static const unsigned char magic[6] = { 'L', 'U', 'K', 'S', 0xba, 0xbe };
    unsigned char h[16];
    uint64_t n = 0;
    int i, r;

    *size = 0;
    if (raw < sizeof h)
        return 0;
    r = cv_backend_pread(b, h, sizeof h, 0);
    if (r < 0)
        return r;
    if (memcmp(h, magic, sizeof magic) != 0 || h[6] != 0 || h[7] != 2)
        return 0;
    for (i = 0; i < 8; i++)
        n = n << 8 | h[LUKS2_HDR_SIZE_OFF + i];
    if (n >= LUKS2_HDR_MIN && n <= LUKS2_HDR_MAX && (n & (n - 1)) == 0)
        *size = n;
    return 0;
}

int cv_luks_load_metadata(struct cv_backend *b, struct cv_luks **out)
{
    struct cv_luks *l = NULL;
    uint64_t raw, copy, meta = 0, ks;
    int r;

    r = cv_backend_size(b, &raw);
    if (r == 0)
        r = luks2_copy_size(b, raw, &copy);
    if (r < 0)
        return r;
    /* LUKS1 keeps its few keyslots right after a small header, and a
     * damaged LUKS2 primary needs the search for the secondary copy: the
     * full load does both, and says what is wrong. */
    if (copy == 0 || raw < 2 * copy)
        return cv_luks_load(b, out);
    r = luks_new(b, HDR_MAX, &l);
    if (r < 0)
        return r;
    l->metadata_only = 1;
    r = copy_in(l, 0, 2 * copy);
    if (r < 0)
        goto out;
    if (crypt_load(l->cd, CRYPT_LUKS2, NULL) < 0 ||
        crypt_get_metadata_size(l->cd, &meta, &ks) < 0 || meta != copy) {
        cv_luks_free(l);
        l = NULL;
        return cv_luks_load(b, out);
    }
    r = check_supported(l);
out:
    if (r < 0)
        cv_luks_free(l);
    else
        *out = l;
    return r;
}

/* A LUKS2 data segment is "dynamic" (to the end of the device) unless a
 * size was fixed at format time. */
static uint64_t segment_limit(struct cv_luks *l)
{
    const char *json = NULL;
    json_object *root, *segs, *seg0, *size;
    uint64_t limit = UINT64_MAX;

    if (strcmp(crypt_get_type(l->cd), CRYPT_LUKS2) != 0 ||
        crypt_dump_json(l->cd, &json, 0) < 0 || !json)
        return limit;
    root = json_tokener_parse(json);
    if (root && json_object_object_get_ex(root, "segments", &segs) &&
        json_object_object_get_ex(segs, "0", &seg0) &&
        json_object_object_get_ex(seg0, "size", &size) &&
        strcmp(json_object_get_string(size), "dynamic") != 0)
        limit = strtoull(json_object_get_string(size), NULL, 10);
    json_object_put(root);
    return limit;
}

int cv_luks_info(struct cv_luks *l, struct cv_luks_info *info)
{
    const char *type = crypt_get_type(l->cd);
    const char *uuid = crypt_get_uuid(l->cd);
    uint64_t avail, limit, meta, slot;
    int i, max = crypt_keyslot_max(type);

    memset(info, 0, sizeof *info);
    info->luks_version = strcmp(type, CRYPT_LUKS1) == 0 ? 1 : 2;
    snprintf(info->uuid, sizeof info->uuid, "%s", uuid ? uuid : "");
    snprintf(info->cipher, sizeof info->cipher, "%s-%s",
             crypt_get_cipher(l->cd), crypt_get_cipher_mode(l->cd));
    info->key_bits = (unsigned)crypt_get_volume_key_size(l->cd) * 8;
    info->sector_size = (unsigned)crypt_get_sector_size(l->cd);
    info->data_offset = crypt_get_data_offset(l->cd) * 512;
    info->raw_size = l->raw_size;
    avail = l->raw_size > info->data_offset ? l->raw_size - info->data_offset : 0;
    limit = segment_limit(l);
    if (avail > limit)
        avail = limit;
    info->effective_size = avail / info->sector_size * info->sector_size;
    for (i = 0; i < max && i < CV_LUKS_MAX_SLOTS; i++) {
        crypt_keyslot_info s = crypt_keyslot_status(l->cd, i);
        if (s == CRYPT_SLOT_ACTIVE || s == CRYPT_SLOT_ACTIVE_LAST)
            info->slots[info->nslots++] = i;
    }
    /* LUKS1 has room for its 8 keyslots by construction; a LUKS2 header
     * whose last keyslot was removed no longer says its key size (then
     * nothing is known to be full). */
    info->max_slots = max;
    if (info->luks_version == 2 &&
        crypt_get_metadata_size(l->cd, &meta, &info->keyslots_size) == 0) {
        slot = cv_luks_keyslot_area_size(info->key_bits / 8);
        if (slot && info->keyslots_size / slot < (uint64_t)max)
            info->max_slots = (int)(info->keyslots_size / slot);
    }
    return 0;
}
