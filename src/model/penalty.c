/* penalty.c: the quadratic penalties that keep a continually trained model near its
 * earlier weights (L2-to-init, EWC) and the diagonal empirical Fisher that weights EWC. */
#include <string.h>

#include "thermo/model.h"

double th_penalty_quadratic(const float *theta, const float *anchor, const float *weight, size_t n, double lambda,
                            float *grad) {
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)theta[i] - (double)anchor[i];
        double w = weight ? (double)weight[i] : 1.0;
        sum += w * d * d;
        if (grad) grad[i] += (float)(2.0 * lambda * w * d);
    }
    return lambda * sum;
}

th_status th_fisher_diag(th_gpt2 *m, int B, int T, int batches,
                         void (*next_batch)(int i, int *inputs, int *targets, void *user), void *user, float *fisher) {
    if (batches < 1 || B < 1 || T < 1)
        return th_fail(TH_ERR_INVALID, "Fisher: %d batches of %d x %d", batches, B, T);
    size_t n = th_gpt2_num_params(th_gpt2_get_config(m));
    size_t BT = (size_t)B * T;
    int *ids = th_alloc(sizeof(int) * BT * 2);
    double *acc = th_calloc(n, sizeof(double));
    th_status st = TH_OK;
    if (!ids || !acc) {
        st = th_fail(TH_ERR_NOMEM, "Fisher: out of memory for %zu parameters", n);
        goto done;
    }
    for (int b = 0; b < batches && st == TH_OK; b++) {
        float loss = 0;
        next_batch(b, ids, ids + BT, user);
        if ((st = th_gpt2_zero_grad(m)) != TH_OK) break;
        if ((st = th_gpt2_forward(m, ids, ids + BT, B, T, &loss)) != TH_OK) break;
        if ((st = th_gpt2_backward(m, 1.0f)) != TH_OK) break;
        const float *g = th_gpt2_grads(m);
        for (size_t i = 0; i < n; i++) acc[i] += (double)g[i] * (double)g[i];
    }
    if (st == TH_OK)
        for (size_t i = 0; i < n; i++) fisher[i] = (float)(acc[i] / batches);
done:
    th_free(acc);
    th_free(ids);
    return st;
}
