// The attention layer: Q/K/V projections (per head scheme), RoPE, the attention core chosen by
// the config's pattern (dense, or the block-sparse flash kernel over the pattern's mask;
// linformer first projects K and V along the sequence), and the output projection.
// Parameters: wq [C, H·D], wk [C, Hkv·D], wv [C, Hkv·D] (mla: see mla.h), wo [H·D, C] (y = x·W).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "attention/attn_shape.h"
#include "attention/block_mask.h"
#include "attention/linformer.h"
#include "attention/mla.h"
#include "attention/ring_attention.h"
#include "attention/sp_layout.h"
#include "core/arena.h"
#include "core/config.h"
#include "core/param_store.h"
#include "core/rng.h"
#include "model/rope.h"

namespace longctx {

// What forward keeps for backward, per layer.
template <class T>
struct AttentionActs {
  T* q = nullptr;      // [B, H, T, D], after RoPE
  T* k = nullptr;      // [B, Hkv, T, D], after RoPE (mla: in the scratch, rebuilt from the latent)
  T* v = nullptr;      // [B, Hkv, T, D]
  MlaActs<T> mla;      // mla: the latent [B·T, r], all that K and V need
  // longformer with separate_global_proj: the G global rows' own attention over every token.
  T* xg = nullptr;     // [B, G, C] the global rows of x
  T* qg = nullptr;     // [B, H, G, D]
  T* kg = nullptr;     // [B, Hkv, T, D]
  T* vg = nullptr;     // [B, Hkv, T, D]
  T* outg = nullptr;   // [B, H, G, D]
  T* lseg = nullptr;   // [B, H, G]
  T* out = nullptr;    // [B, H, T, D], the core's output
  T* lse = nullptr;    // [B, H, T]          (flash; dense under sp)
  T* probs = nullptr;  // [B, H, T, T]       (dense on one process)
  T* merged = nullptr; // [B, T, H·D], input of wo
};

// Buffers needed only while a layer runs; shared by all layers.
template <class T>
struct AttentionScratch {
  T* proj = nullptr;  // [B, T, H·D]
  T* k = nullptr;     // mla: expanded K [B, H, T, D]
  T* v = nullptr;     // mla: expanded V [B, H, T, D]
  T* kp = nullptr;    // linformer: projected K, V and their gradients [B, Hkv, k, D]; vp
                      // follows kp and dvp follows dkp (one all-reduce per pair under sp)
  T* vp = nullptr;
  T* dkp = nullptr;
  T* dvp = nullptr;
  MlaScratch<T> mla;
  T* doutg = nullptr;  // separate_global_proj: [B, H, G, D]
  T* dqg = nullptr;    // [B, H, G, D]
  T* dkg = nullptr;    // [B, Hkv, T, D]
  T* dvg = nullptr;    // [B, Hkv, T, D]
  T* dq = nullptr;    // [B, H, T, D]
  T* dk = nullptr;    // [B, Hkv, T, D]
  T* dv = nullptr;    // [B, Hkv, T, D]
  T* dout = nullptr;  // [B, H, T, D]
};

// What the data says about the samples of the coming micro-batch; attention obeys it until
// the next call. Empty: the pattern alone.
struct BatchStructure {
  // [B, T] the document of each position, non-decreasing along a sample (packed windows):
  // no score crosses a document boundary. Null: no document mask.
  const int32_t* doc = nullptr;
  // Per sample, positions that are global besides attention.global_tokens (longformer only).
  std::vector<std::vector<int64_t>> globals;
  // [B] per sample, how many leading positions are real tokens; the rest is padding, which
  // mean pooling leaves out. Empty: every position is real. Attention ignores it (the document
  // mask keeps padding out of attention).
  std::vector<int64_t> lengths;
  // Nothing for attention to obey (lengths concern pooling only).
  bool empty() const { return doc == nullptr && globals.empty(); }

  // Lengths of padded samples, whose padding is the document after the first (doc: [B, T]):
  // per sample, the run of positions in its first position's document.
  static std::vector<int64_t> first_doc_lengths(const int32_t* doc, int64_t B, int64_t T) {
    std::vector<int64_t> out(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      const int32_t* d = doc + b * T;
      int64_t len = 1;
      while (len < T && d[len] == d[0]) ++len;
      out[static_cast<size_t>(b)] = len;
    }
    return out;
  }
};

// Whether cfg's samples end in padding: one document per sample (packing: doc) or the
// synthetic listops task. The padding is the document after the first.
bool samples_padded(const Config& cfg);

// The structure of B samples of T positions whose documents are doc[B·T]: the document mask
// (data.doc_mask, or padding, which nothing may attend to; not under linformer, which has no
// mask), the real lengths of padded samples (mean pooling leaves padding out), and each
// document's first token as a global one (attention.global_doc_starts).
BatchStructure batch_structure_for(const Config& cfg, const int32_t* doc, int64_t B, int64_t T,
                                   bool padded);

// Sequence parallelism: this rank holds the positions layout.ranges(rank) of every sequence,
// in ascending order, and attention spans the whole sequence through the sp group: ulysses
// (head all-to-all) or ring (K/V exchange). Null comm: one rank holds everything.
struct SeqParallel {
  Comm* comm = nullptr;
  attn::SpLayout layout;
  int rank = 0;
  SpMode mode = SpMode::ulysses;
  bool active() const { return comm != nullptr; }
  int64_t full_len(int64_t local) const { return active() ? layout.T : local; }
  // The true position of each local row (empty when inactive).
  std::vector<int64_t> positions() const;
};

template <class T>
class AttentionLayer {
 public:
  // `layer` and `seed` key BigBird's random blocks; `linformer_e`: the model-wide projection
  // when attn.linformer.share is layerwise.
  AttentionLayer(ParamStore<T>& store, const std::string& prefix, const ModelConfig& model,
                 const AttentionConfig& attn, bool causal, int layer = 0, uint64_t seed = 0,
                 int linformer_e = -1);
  // The training step about to run: BigBird with resample: per_step redraws its blocks.
  void set_step(int64_t step) const;
  // The structure of the next micro-batch [B, Tn] (see BatchStructure; Tn is the whole
  // sequence under sequence parallelism); kept until replaced.
  void set_batch(const BatchStructure& s, int64_t B, int64_t Tn) const;
  // Before layout(): from then on forward/backward take this rank's rows of every sequence
  // (Tn = layout.local_len()) and masks span layout.T. Dense then runs the tiled sp cores
  // (flash, ulysses or ring) with its full or causal mask: the same attention, without the
  // T × T probabilities. Linformer (contiguous layout) sums the per-rank projections of K and V
  // over the group, whatever sp.mode. Throws for separate_global_proj.
  void set_sequence_parallel(const SeqParallel& sp);
  void init(ParamStore<T>& store, Rng& rng, double std, double out_std) const;

  // Binds this layer's saved activations (and, once, the shared scratch) for a [B, T] batch.
  void layout(Arena<T>& arena, AttentionActs<T>& acts, int64_t B, int64_t Tn) const;
  void layout_scratch(Arena<T>& arena, AttentionScratch<T>& s, int64_t B, int64_t Tn) const;

  // y[B·T, C] = Attention(x[B·T, C]). `rope` is built for head_dim (mla: for rope_dim).
  void forward(ParamStore<T>& store, const T* x, T* y, AttentionActs<T>& acts,
               AttentionScratch<T>& s, int64_t B, int64_t Tn, const RopeTable<T>* rope) const;
  // dx[B·T, C] = ∂L/∂x (overwritten); parameter gradients accumulate into the store.
  // With mla, `acts.mla.latent` is recomputed in place (the same values).
  void backward(ParamStore<T>& store, const T* x, const T* dy, T* dx, AttentionActs<T>& acts,
                AttentionScratch<T>& s, int64_t B, int64_t Tn, const RopeTable<T>* rope) const;

  int64_t n_head() const { return H_; }
  int64_t n_kv_head() const { return Hkv_; }
  int64_t head_dim() const { return D_; }
  // Scores each query computes on average at length Tn, over the heads (the pattern's cost).
  double scores_per_query(int64_t Tn) const;
  // Values of K and V this layer keeps per token for backward (mla: its latent).
  int64_t kv_saved_values_per_token() const;
  // The masks attention over Tn positions uses (the batch's, else the pattern's; see mask()):
  // incremental decoding reads its rows so that it attends to exactly the keys training did.
  const attn::MaskSet& masks_for(int64_t Tn) const { return mask(Tn); }

 private:
  attn::AttnShape shape(int64_t B, int64_t Tn) const;
  // q, k, v [B, H|Hkv, T, D] from x; with mla, k and v land in the scratch.
  void project_qkv(ParamStore<T>& st, const T* x, T* q, T*& k, T*& v, AttentionActs<T>& a,
                   AttentionScratch<T>& s, int64_t B, int64_t Tn, const RopeTable<T>* rope) const;
  // separate_global_proj: the global rows' outputs from their own projections replace the
  // local path's rows. Backward first takes those rows out of s.dout and runs their core, then,
  // after the local path has written dx, adds the global projections' gradients.
  void global_forward(ParamStore<T>& st, const T* x, AttentionActs<T>& a, AttentionScratch<T>& s,
                      int64_t B, int64_t Tn, const RopeTable<T>* rope) const;
  void global_core_backward(const AttentionActs<T>& a, AttentionScratch<T>& s, int64_t B,
                            int64_t Tn) const;
  void global_proj_backward(ParamStore<T>& st, const T* x, T* dx, const AttentionActs<T>& a,
                            AttentionScratch<T>& s, int64_t B, int64_t Tn,
                            const RopeTable<T>* rope) const;
  const attn::MaskSet& global_rows_mask(int64_t Tn) const;
  // Rotates rows [B, Hh, G, D] whose positions are globals_ (rope_apply wants consecutive ones).
  void rope_global_rows(T* x, const RopeTable<T>& rope, int64_t B, int64_t Hh, bool inverse) const;
  // The masks the kernels use: the batch's (set_batch) or else the pattern's.
  const attn::MaskSet& mask(int64_t Tn) const;
  // The attention core on this rank's rows: flash, or across the sp group. Returns where the
  // output is in local layout: `out`, or, when Ulysses keeps the head layout for backward
  // (q, k, v, out and lse then hold head-layout tensors), `scratch`.
  const T* core_forward(const attn::AttnShape& sh, const attn::MaskSet& m, T* q, T* k, T* v,
                        T* out, T* lse, T scale, T* scratch) const;
  void core_backward(const attn::AttnShape& sh, const attn::MaskSet& m, const T* q, const T* k,
                     const T* v, const T* out, const T* lse, const T* dout, T* dq, T* dk, T* dv,
                     T scale) const;
  // RoPE on x [B, Hh, Tn, D] at this rank's positions.
  void rotate(T* x, const RopeTable<T>& rope, int64_t B, int64_t Hh, int64_t Tn,
              bool inverse) const;
  // The ring plan of a mask set, rebuilt (collectively) when the masks change.
  const attn::RingPlan& ring_plan(const attn::MaskSet& m) const;
  // The pattern's masks for length Tn, built on first use and kept until Tn or the step changes.
  const attn::MaskSet& pattern_mask(int64_t Tn) const;
  attn::MaskSet build_mask(int64_t Tn) const;
  // Dense keeps its T × T probabilities (one process only; under sp it runs the sp cores).
  bool dense_probs() const { return pattern_ == Pattern::dense && !sp_.active(); }
  // Linformer: s.kp, s.vp = the k projected keys and values of the whole sequence.
  void linformer_kv(ParamStore<T>& st, T* k, T* v, AttentionScratch<T>& s, int64_t B,
                    int64_t Tn) const;
  // Linformer has no mask: padding (set_batch's lengths) is kept out of its projections by
  // zeroing the padding rows of x [B, Hkv, Tn, D] (keys and values, and their gradients).
  void zero_padding(T* x, int64_t B, int64_t Tn) const;
  // Linformer: the Tn queries against the k projected keys, every score allowed.
  const attn::MaskSet& linformer_mask(int64_t Tn) const;

  int64_t C_, H_, Hkv_, D_;
  Pattern pattern_;
  int block_;
  bool causal_;
  AttentionConfig cfg_;
  int layer_;
  uint64_t seed_;
  mutable int64_t step_ = -1;  // -1: masks fixed for the run
  int wq_ = -1, wk_ = -1, wv_ = -1, wo_ = -1;
  int wqg_ = -1, wkg_ = -1, wvg_ = -1;  // separate_global_proj
  std::vector<int64_t> globals_;        // sorted global positions (separate_global_proj)
  std::unique_ptr<MlaProjection<T>> mla_;
  LinformerParams lin_;
  int64_t lin_k_ = 0, max_len_ = 0;
  mutable attn::MaskSet lin_mask_;
  mutable std::vector<int64_t> lin_lengths_;  // linformer: real tokens per sample; empty: all  // queries × the k projected keys: every score exists
  mutable attn::MaskSet global_mask_;  // separate_global_proj: the G global rows × every key
  mutable attn::MaskSet mask_;
  mutable attn::MaskSet batch_mask_, batch_global_mask_;  // set_batch's; empty: none
  SeqParallel sp_;
  bool ulysses_kept_ = false;  // Ulysses keeps head-layout q, k, v, out, lse between passes
  std::vector<int64_t> rows_;  // sp: the position of each local row
  mutable uint64_t mask_gen_ = 0;  // bumped whenever a mask set is rebuilt
  mutable uint64_t plan_gen_ = ~uint64_t(0);
  mutable const attn::MaskSet* plan_masks_ = nullptr;
  mutable attn::RingPlan plan_;
};

}  // namespace longctx
