// The mask is data, the kernel is generic: a pattern lowers to, for each query block, the list
// of key blocks that hold any allowed score, plus an element rule applied inside the blocks
// that are only partly allowed. Dense and flash use the full and causal masks; sparse patterns
// only add mask builders.
//
// A mask may carry further parts whose allowed scores are disjoint from its own; the kernels
// run each part as its own block mask and merge the partial softmaxes through their logsumexp.
// A part may list its blocks over a permutation of the sequence: strided's "every stride-th
// key" scores lie one per block on scattered diagonals in sequence order, but group the
// sequence by position mod stride and they fill whole blocks.
#pragma once
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "attention/attn_shape.h"

namespace longctx::attn {

// Positions that see every key and are seen by every query (Longformer's global tokens), shared
// by the copies of a rule so that copying a rule stays cheap and membership is one byte lookup.
struct GlobalSet {
  std::vector<uint8_t> is_global;  // [n]
  std::vector<int64_t> positions;  // ascending, distinct
};

// Throws longctx::Error naming the first position outside [0, n) and n. Duplicates are merged.
std::shared_ptr<const GlobalSet> make_global_set(int64_t n, std::vector<int64_t> positions);

// Which (query i, key j) scores exist, as data. With d = |i − j|, in this order:
//   causal and j > i                      not allowed
//   d < min_distance                      not allowed (those scores belong to another part)
//   window < 0                            allowed (no window: full or causal attention)
//   d ≤ window and d mod dilation == 0    allowed
//   stride > 0 and d mod stride == 0      allowed
//   i or j global                         allowed
struct ElementRule {
  bool causal = false;
  int64_t window = -1;
  int64_t dilation = 1;
  int64_t stride = 0;
  int64_t min_distance = 0;
  std::shared_ptr<const GlobalSet> globals;
  // Query index -> sequence position, for masks whose rows are a few chosen positions (the
  // global rows of separate_global_proj) or one rank's share of the sequence; null: the index
  // is the position.
  std::shared_ptr<const std::vector<int64_t>> q_pos;
  // Key index -> sequence position (ascending), for masks over one rank's share of the keys
  // (restrict_to_positions); null: the index is the position.
  std::shared_ptr<const std::vector<int64_t>> k_pos;
  // Documents of a packed sequence (doc_mask): scores across documents are never allowed.
  std::shared_ptr<const std::vector<int32_t>> doc;  // [n] document of each position

  bool is_global(int64_t p) const { return globals && globals->is_global[p]; }
  int64_t q_position(int64_t i) const { return q_pos ? (*q_pos)[i] : i; }
  int64_t k_position(int64_t j) const { return k_pos ? (*k_pos)[j] : j; }
  // Query index i, key index j (positions unless q_pos / k_pos map them).
  bool allowed(int64_t i, int64_t j) const { return allowed_at(q_position(i), k_position(j)); }
  // Query position i, key position j.
  bool allowed_at(int64_t i, int64_t j) const {
    if (causal && j > i) return false;
    if (doc && (*doc)[i] != (*doc)[j]) return false;
    const int64_t d = i > j ? i - j : j - i;
    if (d < min_distance) return false;
    if (window < 0) return true;
    if (d <= window && (dilation == 1 || d % dilation == 0)) return true;
    if (stride > 0 && d % stride == 0) return true;
    return is_global(i) || is_global(j);
  }
  // ok[c] = allowed(i, j0 + c) for c < nk, by whole runs of the row rather than per element:
  // the kernels call it for every row of every partial block.
  void row(int64_t i, int64_t j0, int64_t nk, uint8_t* ok) const;
  // ok[c] = allowed(i, js[c]) for keys at any indices (-1: padding, never allowed; i = -1:
  // a padding query, nothing allowed). Without a window this is a few compares per key that
  // vectorize, which is what a permuted part's partial blocks need.
  void row_at(int64_t i, const int64_t* js, int64_t nk, uint8_t* ok) const;
};

// A mask's index space when it is not the sequence itself: groups of positions, each group
// starting on a block boundary and padded up to one.
struct Order {
  std::vector<int64_t> pos;  // [index length] sequence position at each index; -1: padding
  std::vector<int64_t> inv;  // [n] index of each sequence position
};

// The kernels read q, k, v rows at an order's `pos` (the "sequence" of an order is the rows of
// those tensors); the rule then maps rows to true positions when q_pos / k_pos are set.
struct BlockMask {
  int64_t n_q = 0, n_k = 0;  // index-space lengths: the sequence lengths unless `order` is set
  int block = 64;            // square tile: `block` queries × `block` keys
  ElementRule rule;          // on sequence positions
  std::vector<int64_t> row_ptr;  // n_qblocks() + 1 offsets into col/full
  std::vector<int32_t> col;      // key block indices, ascending within a row
  // 1: every score in the block is allowed (skip the rule); a full block holds no padding. The
  // rule allows every score of a full block, so a block cut smaller (restrict_to_positions) can
  // fall back on the rule.
  std::vector<uint8_t> full;
  std::shared_ptr<const Order> order;  // null: index = sequence position (square when set)
  // The keys' order when it differs from the queries' (a sub-mask between two ranks' shares of
  // the sequence); null: `order`. Set only together with `order`.
  std::shared_ptr<const Order> k_order;
  std::vector<BlockMask> parts;        // further parts (one level deep, same block)

  int64_t n_qblocks() const { return (n_q + block - 1) / block; }
  int64_t n_kblocks() const { return (n_k + block - 1) / block; }
  const Order* key_order() const { return k_order ? k_order.get() : order.get(); }
  // Part p (0: this mask itself), or null when it has fewer parts.
  const BlockMask* part(int64_t p) const {
    if (p == 0) return this;
    return p <= int64_t(parts.size()) ? &parts[size_t(p - 1)] : nullptr;
  }
  int64_t seq_q() const { return order ? int64_t(order->inv.size()) : n_q; }
  int64_t seq_k() const { return key_order() ? int64_t(key_order()->inv.size()) : n_k; }
  // Query row at index x (identity without an order; -1: padding).
  int64_t position(int64_t x) const { return order ? order->pos[x] : x; }
  // Key row at index y (identity without an order; -1: padding).
  int64_t key_position(int64_t y) const { return key_order() ? key_order()->pos[y] : y; }

  // Blocks a kernel evaluates, over all parts.
  int64_t blocks_computed() const;
  // Scores inside those blocks (what the kernel computes, masked or not), over all parts.
  int64_t computed_scores() const;
  // Number of allowed (i, j) pairs: the scores a kernel must compute to be exact.
  int64_t allowed_scores() const;
  // The single source of truth for which scores exist (sequence positions): some part lists
  // the block of (i, j) and the block is full or the part's rule allows (i, j).
  bool allowed(int64_t i, int64_t j) const;
  // ok[j] = allowed(i, j) for every key j < seq_k(), in O(seq_k) plus the row's blocks.
  void allowed_row(int64_t i, uint8_t* ok) const;
};

// Rows at the given sequence positions (ascending) against all n_k keys: every key, or with
// `causal` the keys j <= the row's position.
BlockMask rows_mask(std::vector<int64_t> positions, int64_t n_k, int block, bool causal);

// The mask restricted to scores within one document: doc[p] is the document of position p,
// staying or growing by one from each position to the next. Blocks whose queries and keys share no document are dropped, blocks that are
// not inside one document become partial; every part is restricted too.
BlockMask restrict_to_documents(BlockMask m, std::shared_ptr<const std::vector<int32_t>> doc);

// Every query sees every key.
BlockMask full_mask(int64_t n_q, int64_t n_k, int block);
// Query i sees keys j <= i (n_q == n_k).
BlockMask causal_mask(int64_t n, int block);
// The blocks of an n × n sequence that hold any score the rule allows, each flagged full or
// partial. Candidates come from the rule (window band, stride diagonals, global rows and
// columns) and are classified by interval arithmetic on i − j, so the cost is
// O(candidate blocks), not O(n²).
BlockMask mask_from_rule(int64_t n, int block, const ElementRule& rule);

// One rank's share of the sequence: ascending, disjoint ranges [begin, end) of positions; local
// row x holds the x-th of those positions.
struct HeldPositions {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  std::shared_ptr<const std::vector<int64_t>> pos;  // [count()] position of each local row

  // Throws unless the ranges are non-empty, ascending and disjoint.
  static HeldPositions of(std::vector<std::pair<int64_t, int64_t>> ranges);
  int64_t count() const { return int64_t(pos->size()); }
  int64_t row(int64_t p) const;  // local row of position p, -1 when not held
};

// The scores of a mask over a square sequence between queries q and keys k (each part
// restricted), as a mask over local rows: query row x is position q.pos[x], key row y is
// k.pos[y], and the rule still sees true positions (q_pos, k_pos). Each local block is one block
// of the original (local rows are laid out by the original's blocks, padded where a block is
// only partly held), so pattern data that lives in the block lists (BigBird's random blocks, a
// permuted part's groups) carries over; when both shares start on block boundaries and need no
// padding the result has no order. Blocks left without an allowed score are dropped, so
// blocks_computed() == 0 means the pair holds no score at all. Masks with rows of their own
// (q_pos) throw.
BlockMask restrict_to_positions(const BlockMask& m, const HeldPositions& q, const HeldPositions& k);

// What block (qb, kb) of a mask holds, by checking every element of it (through the order, if
// any; padding is never allowed). For the few blocks interval arithmetic does not settle.
enum class BlockFill : uint8_t { none, partial, full };
BlockFill fill_by_elements(const BlockMask& m, int64_t qb, int64_t kb);

// The masks one kernel call uses: one shared by every (sample, head), one per head, one per
// sample, or one per (sample, head); get(b, h) = masks[b · b_stride + h · h_stride].
struct MaskSet {
  std::vector<BlockMask> masks;
  int64_t b_stride = 0, h_stride = 0;

  const BlockMask& get(int64_t b, int64_t h) const { return masks[b * b_stride + h * h_stride]; }
  static MaskSet shared(BlockMask m);
  static MaskSet per_head(std::vector<BlockMask> masks);    // masks[h]
  static MaskSet per_sample(std::vector<BlockMask> masks);  // masks[b], shared by the heads
  static MaskSet per_sample_head(std::vector<BlockMask> masks, int64_t n_heads);  // [b·H + h]
  // The same masks for heads [h0, h0 + n) of a batch of B samples, as heads 0..n-1.
  MaskSet heads(int64_t B, int64_t h0, int64_t n) const;
  // Every mask restricted by restrict_to_positions (same strides).
  MaskSet restricted(const HeldPositions& q, const HeldPositions& k) const;
  // Blocks over all masks (0: no (sample, head) has any score).
  int64_t blocks_computed() const;
  // Throws unless every (b, h) of the shape has a mask, each Tq × Tk with one block size and
  // well formed. `who` names the caller in the message.
  void check(const AttnShape& s, const char* who) const;
};

}  // namespace longctx::attn
