// word2vec skip-gram negative-sampling updates on the GPU, one warp per
// (context, centre) pair: the context's input vector and each target's
// output vector are read by the warp's lanes and dot products reduced with
// shuffles. Negatives are drawn per pair from the noise table with a
// counter-based hash. Each warp adds its pairs'
// loss to one slot per block (summed on the host in f64).
#include "common.cuh"

#define MAX_EXP 6.0f

__device__ __forceinline__ unsigned long long mix(unsigned long long x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return x;
}

extern "C" __global__ void word2vec_sgns(float* syn0, float* syn1, const unsigned int* pairs, int n_pairs,
                                         const unsigned int* table, long long table_len, int dim, int negative,
                                         float alpha, unsigned long long seed, float* block_loss) {
    const int warps = blockDim.x / 32, lane = threadIdx.x % 32;
    const int pair = blockIdx.x * warps + threadIdx.x / 32;
    float loss = 0.0f;
    if (pair < n_pairs) {
        unsigned int context = pairs[2 * pair], word = pairs[2 * pair + 1];
        float* v = syn0 + (long long)context * dim;
        float ctx[8], neu[8];  // dim <= 256: 8 values per lane
        for (int i = 0; i < 8; i++) { int j = lane + 32 * i; ctx[i] = j < dim ? v[j] : 0.0f; neu[i] = 0.0f; }
        for (int k = 0; k <= negative; k++) {
            unsigned int target;
            float label;
            if (k == 0) { target = word; label = 1.0f; }
            else {
                target = table[mix(seed ^ ((unsigned long long)pair * 131 + k)) % table_len];
                if (target == word) continue;
                label = 0.0f;
            }
            float* u = syn1 + (long long)target * dim;
            float out[8], f = 0.0f;
            for (int i = 0; i < 8; i++) { int j = lane + 32 * i; out[i] = j < dim ? u[j] : 0.0f; f += ctx[i] * out[i]; }
            f = warp_sum(f);
            float p = f > MAX_EXP ? 1.0f : (f < -MAX_EXP ? 0.0f : 1.0f / (1.0f + expf(-f)));
            loss -= logf(fmaxf(label > 0.0f ? p : 1.0f - p, 1e-7f));
            float g = (label - p) * alpha;
            for (int i = 0; i < 8; i++) {
                int j = lane + 32 * i;
                neu[i] += g * out[i];
                if (j < dim) atomicAdd(&u[j], g * ctx[i]);
            }
        }
        for (int i = 0; i < 8; i++) { int j = lane + 32 * i; if (j < dim) atomicAdd(&v[j], neu[i]); }
    }
    __shared__ float part[32];
    if (lane == 0) part[threadIdx.x / 32] = loss;
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.0f;
        for (int w = 0; w < warps; w++) s += part[w];
        block_loss[blockIdx.x] = s;
    }
}
