#include "attention/mla.h"

#include "attention/head_layout.h"
#include "core/error.h"
#include "core/gemm.h"

namespace longctx {

namespace {
// Rotates with token t at pos[t], or at t without positions.
template <class T>
void rope_slice(T* x, const RopeTable<T>& table, int64_t B, int64_t Tn, int64_t Hh, int64_t D,
                int64_t offset, const int64_t* pos, bool inverse) {
  if (pos)
    rope_apply_slice_at(x, table, B, Tn, Hh, D, offset, pos, inverse);
  else
    rope_apply_slice(x, table, B, Tn, Hh, D, offset, 0, inverse);
}
}  // namespace

namespace {

// k[b,h,t] = concat(nope[b,t,h] (Dn), rope_key[b,t] (R)):  nope [B,T,H,Dn], rope_key [B,T,R]
template <class T>
void assemble_keys(T* k, const T* nope, const T* rope_key, int64_t B, int64_t Tn, int64_t H,
                   int64_t Dn, int64_t R) {
  const int64_t D = Dn + R;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < Tn; ++t) {
        const T* n = nope + ((b * Tn + t) * H + h) * Dn;
        const T* r = rope_key + (b * Tn + t) * R;
        T* d = k + ((b * H + h) * Tn + t) * D;
        for (int64_t i = 0; i < Dn; ++i) d[i] = n[i];
        for (int64_t i = 0; i < R; ++i) d[Dn + i] = r[i];
      }
}

// The inverse of assemble_keys for gradients: dnope [B,T,H,Dn] gets each head's nope slice;
// drope_key [B,T,R] gets the sum over heads (in head order, so the result is deterministic)
// because every head reads the same shared key.
template <class T>
void split_key_grads(T* dnope, T* drope_key, const T* dk, int64_t B, int64_t Tn, int64_t H,
                     int64_t Dn, int64_t R) {
  const int64_t D = Dn + R;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tn; ++t) {
      T* r = drope_key + (b * Tn + t) * R;
      for (int64_t i = 0; i < R; ++i) r[i] = T(0);
      for (int64_t h = 0; h < H; ++h) {
        const T* s = dk + ((b * H + h) * Tn + t) * D;
        T* n = dnope + ((b * Tn + t) * H + h) * Dn;
        for (int64_t i = 0; i < Dn; ++i) n[i] = s[i];
        for (int64_t i = 0; i < R; ++i) r[i] += s[Dn + i];
      }
    }
}

template <class T>
void init_normal(T* w, int64_t n, Rng& rng, double std) {
  for (int64_t i = 0; i < n; ++i) w[i] = static_cast<T>(std * rng.normal());
}

}  // namespace

template <class T>
MlaProjection<T>::MlaProjection(ParamStore<T>& store, const std::string& prefix, int64_t d_model,
                                int64_t n_head, int64_t kv_lora_rank, int64_t rope_dim)
    : C_(d_model),
      H_(n_head),
      D_(n_head > 0 ? d_model / n_head : 0),
      r_(kv_lora_rank),
      R_(rope_dim),
      Dn_(D_ - rope_dim) {
  LONGCTX_CHECK(n_head > 0 && d_model % n_head == 0, "mla: n_head ", n_head,
                " must divide d_model ", d_model);
  LONGCTX_CHECK(kv_lora_rank > 0, "mla: kv_lora_rank must be positive, got ", kv_lora_rank);
  LONGCTX_CHECK(rope_dim > 0 && rope_dim % 2 == 0 && rope_dim < D_, "mla: rope_dim ", rope_dim,
                " must be even and in (0, head_dim = ", D_, ")");
  wq_ = store.add(prefix + ".wq", {C_, H_ * D_}, true);
  w_dkv_ = store.add(prefix + ".w_dkv", {C_, r_}, true);
  w_uk_ = store.add(prefix + ".w_uk", {r_, H_ * Dn_}, true);
  w_uv_ = store.add(prefix + ".w_uv", {r_, H_ * D_}, true);
  w_kr_ = store.add(prefix + ".w_kr", {C_, R_}, true);
}

template <class T>
void MlaProjection<T>::init(ParamStore<T>& store, Rng& rng, double std) const {
  for (int id : {wq_, w_dkv_, w_uk_, w_uv_, w_kr_})
    init_normal(store.value(id), store.infos()[id].shape.numel(), rng, std);
}

template <class T>
void MlaProjection<T>::layout(Arena<T>& arena, MlaActs<T>& a, int64_t B, int64_t Tn) const {
  a.latent = arena.take(B * Tn * r_);
}

template <class T>
void MlaProjection<T>::layout_scratch(Arena<T>& arena, MlaScratch<T>& s, int64_t B,
                                      int64_t Tn) const {
  s.proj = arena.take(B * Tn * H_ * D_);
  s.rope_key = arena.take(B * Tn * R_);
  s.dlatent = arena.take(B * Tn * r_);
}

template <class T>
void MlaProjection<T>::forward(ParamStore<T>& st, const T* x, T* q, T* k, T* v, MlaActs<T>& a,
                               MlaScratch<T>& s, int64_t B, int64_t Tn, const RopeTable<T>* rope,
                               const int64_t* pos) const {
  LONGCTX_CHECK(!rope || 2 * rope->half == R_, "mla: rope table built for head_dim ",
                2 * rope->half, " but rope_dim is ", R_);
  const int64_t N = B * Tn;
  matmul<T>(false, false, N, H_ * D_, C_, x, st.value(wq_), s.proj);
  if (rope) rope_slice(s.proj, *rope, B, Tn, H_, D_, Dn_, pos, false);
  split_heads(q, s.proj, B, Tn, H_, D_);

  matmul<T>(false, false, N, r_, C_, x, st.value(w_dkv_), a.latent);
  matmul<T>(false, false, N, R_, C_, x, st.value(w_kr_), s.rope_key);
  if (rope) rope_slice(s.rope_key, *rope, B, Tn, 1, R_, 0, pos, false);
  matmul<T>(false, false, N, H_ * Dn_, r_, a.latent, st.value(w_uk_), s.proj);
  assemble_keys(k, s.proj, s.rope_key, B, Tn, H_, Dn_, R_);

  matmul<T>(false, false, N, H_ * D_, r_, a.latent, st.value(w_uv_), s.proj);
  split_heads(v, s.proj, B, Tn, H_, D_);
}

template <class T>
void MlaProjection<T>::backward(ParamStore<T>& st, const T* x, const T* dq, const T* dk,
                                const T* dv, T* dx, const MlaActs<T>& a, MlaScratch<T>& s,
                                int64_t B, int64_t Tn, const RopeTable<T>* rope,
                                const int64_t* pos) const {
  LONGCTX_CHECK(!rope || 2 * rope->half == R_, "mla: rope table built for head_dim ",
                2 * rope->half, " but rope_dim is ", R_);
  const int64_t N = B * Tn;
  // The rotation is orthogonal: its gradient is the inverse rotation.
  // q = x·wq
  merge_heads(s.proj, dq, B, Tn, H_, D_);
  if (rope) rope_slice(s.proj, *rope, B, Tn, H_, D_, Dn_, pos, true);
  matmul<T>(true, false, C_, H_ * D_, N, x, s.proj, st.grad(wq_), true);
  matmul<T>(false, true, N, C_, H_ * D_, s.proj, st.value(wq_), dx);

  // k_rope = RoPE(x·w_kr), k_nope = c·w_uk
  split_key_grads(s.proj, s.rope_key, dk, B, Tn, H_, Dn_, R_);
  if (rope) rope_slice(s.rope_key, *rope, B, Tn, 1, R_, 0, pos, true);
  matmul<T>(true, false, C_, R_, N, x, s.rope_key, st.grad(w_kr_), true);
  matmul<T>(false, true, N, C_, R_, s.rope_key, st.value(w_kr_), dx, true);
  matmul<T>(true, false, r_, H_ * Dn_, N, a.latent, s.proj, st.grad(w_uk_), true);
  matmul<T>(false, true, N, r_, H_ * Dn_, s.proj, st.value(w_uk_), s.dlatent);

  // v = c·w_uv
  merge_heads(s.proj, dv, B, Tn, H_, D_);
  matmul<T>(true, false, r_, H_ * D_, N, a.latent, s.proj, st.grad(w_uv_), true);
  matmul<T>(false, true, N, r_, H_ * D_, s.proj, st.value(w_uv_), s.dlatent, true);

  // c = x·w_dkv
  matmul<T>(true, false, C_, r_, N, x, s.dlatent, st.grad(w_dkv_), true);
  matmul<T>(false, true, N, C_, r_, s.dlatent, st.value(w_dkv_), dx, true);
}

template class MlaProjection<float>;
template class MlaProjection<double>;

}  // namespace longctx
