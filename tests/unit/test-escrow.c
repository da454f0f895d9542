/* KEK escrow documents: round trip, wrong recovery passphrase, changed
 * documents, unknown formats and versions, absurd KDF parameters. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "core/error.h"
#include "luks/escrow.h"
#include "luks/kek-token.h"

static const char PASS[] = "recovery passphrase";
#define PASSLEN (sizeof PASS - 1)

/* Tests are about the format, not the KDF's strength. */
static const struct cv_escrow_cost cheap = { 1, 8192, 1 };

static unsigned char kek[3][CV_KEK_LEN] = {
    "first KEK, thirty-two bytes....",
    "second KEK, thirty-two bytes...",
    "third KEK, thirty-two bytes....",
};

static void check_ok(int r, const char *what)
{
    if (r < 0)
        fail_msg("%s: %d (%s)", what, r, cv_last_error());
}

static void assert_message_has(const char *needle)
{
    const char *msg = cv_last_error();

    if (!strstr(msg, needle))
        fail_msg("message \"%s\" lacks \"%s\"", msg, needle);
}

static char *make(void)
{
    const struct cv_kek_gen gens[] = {
        { 1, kek[0] }, { 2, kek[1] }, { 7, kek[2] },
    };
    char *text = NULL;

    check_ok(cv_escrow_make(gens, 3, "cluster-uuid", PASS, PASSLEN, &cheap,
                            &text), "make");
    return text;
}

/* Opening must fail with want, and return nothing. */
static void assert_open_fails(const char *text, const char *pass, int want,
                              const char *msg)
{
    struct cv_kek_gen *gens = (void *)1;
    size_t n = 99;

    if (cv_escrow_open(text, strlen(text), pass, strlen(pass), &gens, &n) != want)
        fail_msg("open of %.200s: %s, wanted %d", text, cv_last_error(), want);
    assert_null(gens);
    assert_int_equal(n, 0);
    assert_message_has(msg);
}

/* text with the first from replaced by to (malloc'ed). */
static char *replace(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    size_t pre, len = strlen(text) - strlen(from) + strlen(to);
    char *out;

    if (!at)
        fail_msg("\"%s\" not in the document", from);
    pre = (size_t)(at - text);
    out = malloc(len + 1);
    assert_non_null(out);
    memcpy(out, text, pre);
    strcpy(out + pre, to);
    strcat(out, at + strlen(from));
    return out;
}

static void round_trip(void **state)
{
    struct cv_kek_gen *gens = NULL;
    json_object *root, *v;
    char *text = make();
    size_t n = 0;

    (void)state;
    /* No clear KEK in the document. */
    assert_null(strstr(text, "KEK"));
    root = json_tokener_parse(text);
    assert_non_null(root);
    assert_true(json_object_object_get_ex(root, "format", &v));
    assert_string_equal(json_object_get_string(v), "cryptvol-kek-escrow");
    assert_true(json_object_object_get_ex(root, "cluster", &v));
    assert_string_equal(json_object_get_string(v), "cluster-uuid");
    assert_true(json_object_object_get_ex(root, "created", &v));
    assert_int_equal(strlen(json_object_get_string(v)), 20);
    json_object_put(root);

    check_ok(cv_escrow_open(text, strlen(text), PASS, PASSLEN, &gens, &n),
             "open");
    assert_int_equal(n, 3);
    assert_int_equal(gens[0].gen, 1);
    assert_int_equal(gens[1].gen, 2);
    assert_int_equal(gens[2].gen, 7);
    assert_memory_equal(gens[0].kek, kek[0], CV_KEK_LEN);
    assert_memory_equal(gens[1].kek, kek[1], CV_KEK_LEN);
    assert_memory_equal(gens[2].kek, kek[2], CV_KEK_LEN);
    cv_kek_gens_free(gens, n);
    /* A buffer that carries its NUL in the length opens too. */
    check_ok(cv_escrow_open(text, strlen(text) + 1, PASS, PASSLEN, &gens, &n),
             "open with NUL");
    cv_kek_gens_free(gens, n);
    cv_kek_gens_free(NULL, 0);
    free(text);
}

static void wrong_passphrase(void **state)
{
    char *text = make();

    (void)state;
    assert_open_fails(text, "not the passphrase", -CV_EWRONGKEY,
                      "wrong recovery passphrase");
    /* Other KDF parameters derive another key: the same as a wrong
     * passphrase. */
    {
        char *t = replace(text, "\"time\": 1", "\"time\": 2");
        assert_open_fails(t, PASS, -CV_EWRONGKEY, "wrong recovery passphrase");
        free(t);
    }
    free(text);
}

/* One sealed KEK changed: the passphrase opens the others, so it is the
 * document that is wrong. */
static void tampered(void **state)
{
    char *text = make(), *t, *at;

    (void)state;
    t = strdup(text);
    at = strstr(strstr(t, "\"generation\": 2"), "\"sealed\": \"") + 20;
    *at = *at == 'A' ? 'B' : 'A';
    assert_open_fails(t, PASS, -EINVAL, "generation 2 was changed");
    free(t);
    /* A generation renumbered: its name is the associated data. */
    t = replace(text, "\"generation\": 7", "\"generation\": 8");
    assert_open_fails(t, PASS, -EINVAL, "generation 8 was changed");
    free(t);
    /* Twice the same generation. */
    t = replace(text, "\"generation\": 7", "\"generation\": 1");
    assert_open_fails(t, PASS, -EINVAL, "listed twice");
    free(t);
    free(text);
}

static void bad_documents(void **state)
{
    char *text = make(), *t;
    size_t i;
    static const struct { const char *from, *to, *msg; } edits[] = {
        { "\"cryptvol-kek-escrow\"", "\"something-else\"", "not a cryptvol KEK escrow" },
        { "\"format\"", "\"formats\"", "not a cryptvol KEK escrow" },
        { "\"version\": 1", "\"version\": 2", "version 2 is not supported" },
        { "\"version\": 1", "\"version\": \"1\"", "no integer \"version\"" },
        { "\"version\": 1", "\"version\": 1.0", "no integer \"version\"" },
        { "\"argon2id\"", "\"pbkdf2\"", "is not argon2id" },
        { "\"memory_kib\": 8192", "\"memory_kib\": 4194305", "memory" },
        { "\"memory_kib\": 8192", "\"memory_kib\": 4", "memory" },
        { "\"memory_kib\": 8192", "\"memory_kib\": 99999999999", "integers" },
        { "\"time\": 1", "\"time\": 101", "time cost 101" },
        { "\"time\": 1", "\"time\": 0", "time cost 0" },
        { "\"parallel\": 1", "\"parallel\": 17", "parallelism 17" },
        { "\"parallel\": 1", "\"parallel\": -1", "integers" },
        { "\"salt\": \"", "\"salt\": \"!", "salt" },
        { "\"salt\": \"", "\"salt\": \"AAAAAAAA\", \"old_salt\": \"", "salt" },
        { "\"generations\"", "\"gens\"", "\"generations\"" },
        { "\"sealed\": \"", "\"sealed\": \"*", "\"sealed\" is not base64" },
        { "\"generation\": 2", "\"generation\": \"2\"", "no \"generation\"" },
        { "\"generation\": 2", "\"generation\": 4294967296", "no \"generation\"" },
    };

    (void)state;
    for (i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        t = replace(text, edits[i].from, edits[i].to);
        assert_open_fails(t, PASS, -EINVAL, edits[i].msg);
        free(t);
    }
    assert_open_fails("", PASS, -EINVAL, "not a JSON object");
    assert_open_fails("[1, 2]", PASS, -EINVAL, "not a JSON object");
    assert_open_fails("{\"format\": \"cryptvol-kek-escrow\"", PASS, -EINVAL,
                      "not a JSON object");
    t = malloc(strlen(text) + 3);
    assert_non_null(t);
    sprintf(t, "%s{}", text);
    assert_open_fails(t, PASS, -EINVAL, "not a JSON object");
    free(t);
    t = replace(text, "\"generations\": [", "\"generations\": [ ], \"x\": [");
    assert_open_fails(t, PASS, -EINVAL, "\"generations\"");
    free(t);
    free(text);
}

static void make_refuses(void **state)
{
    const struct cv_kek_gen dup[] = { { 1, kek[0] }, { 1, kek[1] } };
    const struct cv_escrow_cost absurd = { 1, 8 * 1024 * 1024, 1 };
    char *text = NULL;

    (void)state;
    assert_int_equal(cv_escrow_make(dup, 0, "c", PASS, PASSLEN, &cheap, &text),
                     -EINVAL);
    assert_int_equal(cv_escrow_make(dup, 2, "c", PASS, PASSLEN, &cheap, &text),
                     -EINVAL);
    assert_message_has("given twice");
    assert_int_equal(cv_escrow_make(dup, 1, "c", PASS, PASSLEN, &absurd, &text),
                     -EINVAL);
    assert_null(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(wrong_passphrase),
        cmocka_unit_test(tampered),
        cmocka_unit_test(bad_documents),
        cmocka_unit_test(make_refuses),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
