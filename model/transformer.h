// The transformer: embed -> N × [norm -> attention -> +res -> norm -> MLP -> +res] -> norm ->
// head -> cross-entropy. causal_lm: a decoder with an LM head over every position. classify: a
// bidirectional encoder whose final states are pooled (mean over the real tokens, or position 0)
// into a class head.
// Forward and backward are written by hand, layer by layer. Activations live in one arena
// sized for a fixed micro-batch [B, T] at construction.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "attention/attention_layer.h"
#include "core/arena.h"
#include "core/config.h"
#include "core/param_store.h"
#include "model/mlp.h"
#include "model/norm.h"
#include "model/rope.h"

namespace longctx {

template <class T>
class Transformer {
 public:
  // `recompute == block` keeps only each block's input and recomputes the block in backward.
  // `seed` keys the random parts of attention patterns (BigBird's random blocks).
  // With sequence parallelism (sp.active()), Tn is this rank's share of every sequence
  // (sp.layout.local_len()), at the positions sp.positions(). classify then pools over the sp
  // group (one all-reduce per micro-batch); forward() and the head's gradient count on the rank
  // that holds position 0 only.
  Transformer(const ModelConfig& model, const AttentionConfig& attn, int64_t B, int64_t Tn,
              Recompute recompute = Recompute::none, Objective objective = Objective::causal_lm,
              uint64_t seed = 0, const SeqParallel& sp = {});

  // Normal(0, init_std) matrices and embeddings, residual output projections scaled by
  // 1/√(2·n_layer) (GPT-2), norms to identity. Depends only on the seed.
  void init(uint64_t seed);

  // inputs, targets: [B, T] token ids (targets may hold kIgnoreIndex; classify reads the class
  // of sample b from targets[b, 0]). Returns the sum of losses; *count gets the number of
  // targets counted.
  double forward(const int32_t* inputs, const int32_t* targets, int64_t* count);
  // Accumulates parameter gradients of scale · Σ losses (scale = 1 / global target count).
  // Must follow forward() on the same inputs; it reuses the logits buffer for their gradient.
  void backward(const int32_t* inputs, const int32_t* targets, T scale);

  // The training step about to run (patterns that redraw per step use it). Call before
  // set_batch.
  void set_step(int64_t step);
  // Documents, per-sample global tokens and real lengths of the coming micro-batches (see
  // BatchStructure); kept until replaced. bs.doc, when set, is [B, T]; bs.lengths, when set,
  // holds B lengths in [1, T] (T: the whole sequence under sp).
  void set_batch(const BatchStructure& bs);
  // Called during backward with an offset lo each time the gradients at flat offsets ≥ lo are
  // final for this micro-batch (after the head, then after each block): data parallelism starts
  // reducing them while the earlier blocks run.
  void set_grad_ready(std::function<void(int64_t lo)> f) { grad_ready_ = std::move(f); }
  ParamStore<T>& params() { return store_; }
  const SeqParallel& sequence_parallel() const { return sp_; }
  const T* logits() const { return logits_; }  // [B, T, V] (classify: [B, n_classes])
  // Per-position losses of the last forward [B·T] (0 where the target is ignored; causal_lm).
  const T* token_losses() const { return losses_; }
  int64_t n_classes() const { return classify_ ? cfg_.n_classes : 0; }  // 0: not a classifier
  int64_t batch() const { return B_; }
  int64_t seq_len() const { return T_; }
  int64_t activation_bytes() const { return arena_.bytes(); }
  // Bytes of keys and values (mla: latents) the layers keep for backward, over all layers.
  int64_t kv_activation_bytes() const;
  // Non-embedding parameters (the "N" of 6·N FLOPs per token).
  int64_t non_embedding_params() const;
  // FLOPs of one training step (forward + backward) per token, counting matmuls and the
  // attention scores actually computed, for sequences of seq_len (0: this model's).
  double train_flops_per_token(int64_t seq_len = 0) const;

 private:
  struct BlockActs {
    T *ln1 = nullptr, *ln1_mean = nullptr, *ln1_rstd = nullptr;
    AttentionActs<T> attn;
    T *mid = nullptr, *ln2 = nullptr, *ln2_mean = nullptr, *ln2_rstd = nullptr;
    MlpActs<T> mlp;
  };
  struct Layer {
    NormLayer<T> ln1;
    AttentionLayer<T> attn;
    NormLayer<T> ln2;
    Mlp<T> mlp;
  };

  void layout(Arena<T>& arena);
  void block_forward(int l, BlockActs& a);
  void block_backward(int l, BlockActs& a);
  const T* head_weight();
  void check_inputs(const int32_t* inputs, const int32_t* targets) const;
  double classify_forward(const int32_t* targets, int64_t* count);
  void classify_backward(T scale);
  // Mean pooling: sample b's real tokens, and whether local row t is one of them.
  int64_t real_len(int64_t b) const { return lengths_.empty() ? sp_.full_len(T_) : lengths_[b]; }
  bool is_real(int64_t b, int64_t t) const {
    return (positions_.empty() ? t : positions_[t]) < real_len(b);
  }

  ModelConfig cfg_;
  SeqParallel sp_;
  std::vector<int64_t> positions_;  // sp: the position of each local row
  int64_t B_, T_, N_, C_, V_;
  bool recompute_, classify_;
  bool holds_first_;  // this rank holds position 0 (always, without sp): the classifier's label
  ParamStore<T> store_;
  int wte_ = -1, wpe_ = -1, lm_head_ = -1, cls_head_ = -1;
  std::vector<Layer> layers_;
  std::vector<int64_t> block_lo_;  // flat offset of block l's first parameter
  int64_t lnf_lo_ = 0;             // ... and of ln_f's (the head's follow it)
  std::function<void(int64_t)> grad_ready_;
  std::unique_ptr<NormLayer<T>> ln_f_;
  LinformerParams linformer_global_{-1, -1, false};  // linformer.share: layerwise
  std::unique_ptr<RopeTable<T>> rope_;

  Arena<T> arena_;
  std::vector<T*> res_;          // L + 1 residual streams [N, C]; res_[l] is block l's input
  std::vector<BlockActs> acts_;  // one per layer, or a single shared set when recomputing
  T *lnf_ = nullptr, *lnf_mean_ = nullptr, *lnf_rstd_ = nullptr;
  T *logits_ = nullptr, *losses_ = nullptr;
  T* pooled_ = nullptr;                 // [B, C], then [B] labels (classify)
  std::vector<int32_t> labels_;         // [B] (classify)
  std::vector<int64_t> lengths_;        // [B] real tokens per sample (mean pooling); empty: all
  T *branch_ = nullptr, *dres_ = nullptr, *dbranch_ = nullptr;
  AttentionScratch<T> attn_scratch_;
  MlpScratch<T> mlp_scratch_;
};

}  // namespace longctx
