// Rotary position embedding (RoFormer), rotate-half form: dimension i pairs with i + D/2.
#pragma once
#include <cstdint>
#include <vector>

namespace longctx {

// cos/sin of position p and frequency i: table[p·(D/2) + i], theta_i = base^(-2i/D).
template <class T>
struct RopeTable {
  int64_t max_pos = 0, half = 0;
  std::vector<T> cos, sin;
  RopeTable() = default;
  RopeTable(int64_t max_pos, int64_t head_dim, double base = 10000.0);
};

// Rotates x[B,H,Tn,D] in place; row t has position pos0 + t. Backward is the inverse rotation
// (apply with inverse = true to the gradient).
template <class T>
void rope_apply(T* x, const RopeTable<T>& table, int64_t B, int64_t H, int64_t Tn, int64_t D,
                int64_t pos0, bool inverse);

// The same with row t at position pos[t] (a sequence-parallel rank's rows need not be
// consecutive positions).
template <class T>
void rope_apply_at(T* x, const RopeTable<T>& table, int64_t B, int64_t H, int64_t Tn, int64_t D,
                   const int64_t* pos, bool inverse);

// Rotates dims [offset, offset + 2·table.half) of every head vector of x[B,Tn,Hh,D] in place
// (rotate-half inside that slice); token t has position pos0 + t. The layout is token-major, as
// a projection x·W produces it, because MLA ropes only a slice of each head and the shared RoPE
// key is one vector per token. Backward: apply with inverse = true to the gradient.
template <class T>
void rope_apply_slice(T* x, const RopeTable<T>& table, int64_t B, int64_t Tn, int64_t Hh, int64_t D,
                      int64_t offset, int64_t pos0, bool inverse);
// The same with token t at position pos[t].
template <class T>
void rope_apply_slice_at(T* x, const RopeTable<T>& table, int64_t B, int64_t Tn, int64_t Hh,
                         int64_t D, int64_t offset, const int64_t* pos, bool inverse);

}  // namespace longctx
