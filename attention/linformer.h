// Linformer (Wang et al. 2020): keys and values are projected along the sequence to a fixed
// length k, K' = E[:, :n]·K and V' = F[:, :n]·V per (batch, head), so the core attends n queries
// to k keys. E and F are [k, max_len]; an input of n < max_len tokens uses the first n columns.
// Because every projected key mixes all positions, the pattern is bidirectional only.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "core/config.h"
#include "core/param_store.h"
#include "core/rng.h"

namespace longctx {

// Xp[b,h] = E[:, :n]·X[b,h]:  E [k, max_len] (row stride max_len), X [B,Hkv,n,D] -> Xp [B,Hkv,k,D].
// E may point at column s0 of a larger E (same row stride), which projects a sequence slice
// [s0, s0 + n): under sequence parallelism each rank does that and the k×D results are summed.
template <class T>
void linformer_project_forward(const T* E, int64_t max_len, int64_t k, int64_t n, const T* X, T* Xp,
                               int64_t B, int64_t Hkv, int64_t D);

// dX[b,h] = E[:, :n]ᵀ·dXp[b,h] (overwritten);  dE[:, :n] += Σ_{b,h} dXp[b,h]·X[b,h]ᵀ.
// dE has E's layout (row stride max_len); columns ≥ n are not touched. The sum over (b, h) runs
// in a fixed order (no atomics), so repeated runs give the same dE bit for bit.
template <class T>
void linformer_project_backward(const T* E, int64_t max_len, int64_t k, int64_t n, const T* X,
                                const T* dXp, T* dX, T* dE, int64_t B, int64_t Hkv, int64_t D);

// Parameter ids of one layer's projections. headwise: own E and F (shared by the layer's heads);
// kv: own E, F == E; layerwise: F == E == the model's one E, which the layer does not own.
struct LinformerParams {
  int e = -1;         // projects keys
  int f = -1;         // projects values
  bool owned = true;  // false: e belongs to the model (layerwise); init it once, not per layer
};

// Registers the model-wide E used by every layer with share = layerwise, as "linformer.E".
template <class T>
LinformerParams linformer_add_global(ParamStore<T>& store, int64_t k, int64_t max_len);

// Registers a layer's projections under `prefix` ("<prefix>.linformer_E", "<prefix>.linformer_F")
// according to `share`; layerwise registers nothing and reuses `global_e` (which it requires).
template <class T>
LinformerParams linformer_add(ParamStore<T>& store, const std::string& prefix, LinformerShare share,
                              int64_t k, int64_t max_len, int global_e = -1);

// Normal(0, std) into the matrices `p` owns (E, and F when it is distinct).
template <class T>
void linformer_init(ParamStore<T>& store, const LinformerParams& p, Rng& rng, double std);

// The default std, 1/sqrt(max_len + k): the variance of the authors' released init (fairseq:
// xavier_uniform with gain 1/√2 on E [k, max_len]). It keeps a projected key at about the scale
// of one input key when n = max_len. The paper's analysis draws E from N(0, 1/k) (a JL
// projection, std 1/sqrt(k)), which preserves norms along the sequence but makes each projected
// key about sqrt(n/k) times larger than an input key.
inline double linformer_default_std(int64_t k, int64_t max_len) {
  return 1.0 / std::sqrt(static_cast<double>(max_len + k));
}

}  // namespace longctx
