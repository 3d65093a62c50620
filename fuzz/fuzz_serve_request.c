/* fuzz_serve_request.c: libFuzzer target for the server's request parser
 * (th_serve_parse_completion) and its UTF-8 check. The input is a POST /v1/completions
 * body. Whatever parses must satisfy the limits it was given (ids in the vocabulary,
 * max_tokens in range, stop sequences short enough); a failure must name a field (param
 * set, possibly "" for the body) and leave the request empty. A violation aborts.
 *
 * Built and run by scripts/fuzz (target serve_request), or by hand from the repository root:
 *   clang -fsanitize=fuzzer,address -D_GNU_SOURCE -Iinclude fuzz/fuzz_serve_request.c \
 *       src/core/core.c src/serve/request.c -ljansson -lm -o /tmp/fuzz_serve_request */
#include <stdlib.h>
#include <string.h>

#include "thermo/serve.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    th_serve_limits lim = {50257, 256, 255};
    th_serve_request r;
    char param[64];
    size_t ok = th_utf8_valid_prefix((const char *)data, size);
    if (ok > size) abort();
    th_status st = th_serve_parse_completion((const char *)data, size, &lim, &r, param, sizeof param);
    if (st != TH_OK) {
        if (r.prompt_text || r.prompt_ids || r.n_stop) abort();
        return 0;
    }
    if (!r.prompt_text == !r.prompt_ids) abort();
    if (r.max_tokens < 1 || r.max_tokens > lim.max_tokens) abort();
    if (r.n_prompt_ids > lim.max_prompt_ids) abort();
    for (size_t i = 0; i < r.n_prompt_ids; i++)
        if (r.prompt_ids[i] < 0 || r.prompt_ids[i] >= lim.vocab_size) abort();
    if (r.n_stop < 0 || r.n_stop > TH_SERVE_MAX_STOP) abort();
    for (int i = 0; i < r.n_stop; i++)
        if (strlen(r.stop[i]) == 0 || strlen(r.stop[i]) > TH_SERVE_MAX_STOP_BYTES) abort();
    if (!(r.temperature >= 0 && r.temperature <= 2) || !(r.top_p > 0 && r.top_p <= 1)) abort();
    th_serve_request_free(&r);
    return 0;
}
