/* libFuzzer: the server's handshake, from the first byte a client sends.
 * The input is what follows the greeting: client flags, then options
 * (IHAVEOPT, option, length, payload) and, if an option opened an export,
 * requests.  It is fed to the real server (fuzz-server.c): nbd_handshake()
 * with its option length guard and drain (next_option, opt_too_big),
 * every option handler, and after NBD_OPT_GO or NBD_OPT_EXPORT_NAME
 * nbd_transmit() on the rest.  A guard that lets a length through shows
 * up as an ASan report or a malloc above the fuzzer's limit. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz-server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_server_run(NULL, 0, data, size);
    return 0;
}
