#include "base64.h"

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

int cv_base64_encode(const void *data, size_t len, char **text)
{
    char *t;

    *text = NULL;
    if (len > INT_MAX / 4 * 3 - 3)
        return -EINVAL;
    t = malloc((len + 2) / 3 * 4 + 1);
    if (!t)
        return -ENOMEM;
    EVP_EncodeBlock((unsigned char *)t, data, (int)len);
    *text = t;
    return 0;
}

static int is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int cv_base64_decode(const char *text, size_t max, unsigned char **data,
                     size_t *len)
{
    size_t n = strlen(text), pad = 0, i;
    unsigned char *d;
    int got;

    *data = NULL;
    *len = 0;
    /* EVP_DecodeBlock skips blanks and counts padding as data: check the
     * shape here so that only one spelling of a value is accepted. */
    if (n == 0 || n % 4 != 0 || n > INT_MAX || n / 4 * 3 > max + 2)
        return -EINVAL;
    while (pad < 2 && text[n - 1 - pad] == '=')
        pad++;
    for (i = 0; i < n - pad; i++)
        if (!is_b64(text[i]))
            return -EINVAL;
    if (n / 4 * 3 - pad > max)
        return -EINVAL;
    d = malloc(n / 4 * 3);
    if (!d)
        return -ENOMEM;
    got = EVP_DecodeBlock(d, (const unsigned char *)text, (int)n);
    if (got < 0 || (size_t)got != n / 4 * 3) {
        free(d);
        return -EINVAL;
    }
    *data = d;
    *len = (size_t)got - pad;
    return 0;
}
