// The streaming loader against the dataset it reads: packed windows and documents equal slices
// of the token stream written by ShardWriter, every window is served once per epoch whatever
// the dp grid, sp slices concatenate to the sample, a restored position continues the same
// sequence, and bad data stops with a message naming the shard.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/config.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/sample_source.h"
#include "data/shuffle.h"
#include "model/cross_entropy.h"
#include "tests/shard_fixtures.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

using test::Doc;

// Documents as the tokenizer stores them: BOS, ids, EOS (byte tokenizer ids).
std::vector<std::vector<Doc>> packed_shards(uint64_t seed, int shards, int docs, int max_len) {
  std::vector<std::vector<Doc>> out;
  for (int s = 0; s < shards; ++s) {
    std::vector<Doc> d = test::make_docs(seed + s, docs, 256, max_len);
    for (Doc& x : d) {
      x.insert(x.begin(), 256);
      x.push_back(257);
    }
    out.push_back(d);
  }
  return out;
}

std::vector<int32_t> stream_of(const std::vector<std::vector<Doc>>& shards) {
  std::vector<int32_t> all;
  for (const auto& s : shards) {
    const auto c = test::concat(s);
    all.insert(all.end(), c.begin(), c.end());
  }
  return all;
}

Config hdf5_config(const std::string& dir, int seq_len, Packing packing = Packing::pack) {
  Config c;
  c.model.vocab_size = 259;
  c.data.source = DataSource::hdf5;
  c.data.train = dir;
  c.data.seq_len = seq_len;
  c.data.packing = packing;
  c.run.seed = 99;
  return c;
}

struct Fixture {
  std::string dir;
  std::vector<int32_t> stream;
  std::unique_ptr<Dataset> ds;
  explicit Fixture(const std::string& name, uint64_t seed = 1) {
    dir = test::temp_dir(name);
    const auto shards = packed_shards(seed, 3, 40, 60);
    test::write_dataset(dir, test::byte_attrs(), shards);
    stream = stream_of(shards);
    ds = std::make_unique<Dataset>(dir);
  }
};

TEST(Permutation, IsABijectionThatDependsOnTheKey) {
  for (uint64_t n : {1ull, 2ull, 3ull, 7ull, 1000ull, 4097ull}) {
    std::vector<int> seen(n, 0);
    Permutation p(n, 5);
    for (uint64_t i = 0; i < n; ++i) ++seen[p(i)];
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), int64_t(n)) << n;
  }
  Permutation a(1000, 1), b(1000, 2);
  int same = 0;
  for (uint64_t i = 0; i < 1000; ++i) same += a(i) == b(i);
  EXPECT_LT(same, 20) << "different keys give different orders";
}

// Each served sample is a window of the stream at a multiple of seq_len; over one epoch every
// window comes exactly once, for dp = 1, 2, 3 (the ranks' shares together).
TEST(Loader, PackedWindowsServedOncePerEpochOnAnyGrid) {
  Fixture f("loader_epoch");
  const int L = 32;
  const Config cfg = hdf5_config(f.dir, L);
  const auto src = make_sample_source(cfg, f.ds.get());
  const int64_t W = src->samples_per_epoch();
  ASSERT_EQ(W, (int64_t(f.stream.size()) - 1) / L);
  for (int dp : {1, 2, 3}) {
    std::vector<std::unique_ptr<Loader>> ranks;
    for (int r = 0; r < dp; ++r)
      ranks.push_back(std::make_unique<Loader>(*src, L, 2, 2, LoaderGrid{r, dp, 0, 1, {}}, 3));
    std::map<int64_t, int> served;  // window -> times, over epoch 0
    std::set<int64_t> samples;
    for (int64_t s0 = 0; s0 < 2 * W; s0 += ranks[0]->step_samples())
      for (auto& l : ranks) {
        const auto b = l->next();
        ASSERT_EQ(b->first_sample, s0);
        for (int64_t i = 0; i < b->A * b->B; ++i) {
          const int64_t s = b->samples[i];
          EXPECT_TRUE(samples.insert(s).second) << "sample " << s << " served twice";
          const int32_t* in = b->inputs.data() + i * L;
          const int32_t* tg = b->targets.data() + i * L;
          int64_t w = -1;
          for (int64_t c = 0; c < W && w < 0; ++c)
            if (std::equal(in, in + L, f.stream.begin() + c * L) &&
                std::equal(tg, tg + L, f.stream.begin() + c * L + 1))
              w = c;
          ASSERT_GE(w, 0) << "sample " << s << " is no window of the stream";
          if (s < W) ++served[w];
        }
      }
    EXPECT_EQ(int64_t(served.size()), W) << "dp " << dp;
    for (auto [w, n] : served) EXPECT_EQ(n, 1) << "window " << w << " dp " << dp;
  }
}

TEST(Loader, SameSeedSameBatchesNewEpochNewOrder) {
  Fixture f("loader_seed");
  const int L = 16;
  Config cfg = hdf5_config(f.dir, L);
  const auto src = make_sample_source(cfg, f.ds.get());
  Loader a(*src, L, 3, 1, {}, 2), b(*src, L, 3, 1, {}, 5);
  for (int step = 0; step < 6; ++step) EXPECT_EQ(a.next()->inputs, b.next()->inputs);
  cfg.run.seed = 100;
  const auto other = make_sample_source(cfg, f.ds.get());
  Loader c(*other, L, 3, 1, {}, 2), d(*src, L, 3, 1, {}, 2);
  EXPECT_NE(c.next()->inputs, d.next()->inputs) << "the seed changes the order";
  // Epoch 1 visits the same windows in another order.
  const int64_t W = src->samples_per_epoch();
  std::vector<int32_t> e0(L), t0(L), e1(L), t1(L);
  int moved = 0;
  for (int64_t k = 0; k < W; ++k) {
    src->read(k, {e0.data(), t0.data(), nullptr});
    src->read(W + k, {e1.data(), t1.data(), nullptr});
    moved += e0 != e1;
  }
  EXPECT_GT(moved, W / 2);
}

TEST(Loader, SequenceParallelSlicesConcatenateToTheSample) {
  Fixture f("loader_sp");
  const int L = 24;
  const auto src = make_sample_source(hdf5_config(f.dir, L), f.ds.get());
  for (int sp : {2, 3, 4}) {
    Loader whole(*src, L, 2, 1, {0, 2, 0, 1, {}}, 2);
    std::vector<std::unique_ptr<Loader>> parts;
    for (int r = 0; r < sp; ++r)
      parts.push_back(std::make_unique<Loader>(*src, L, 2, 1, LoaderGrid{0, 2, r, sp, {}}, 2));
    for (int step = 0; step < 3; ++step) {
      const auto w = whole.next();
      std::vector<std::shared_ptr<const StepBatch>> p;
      for (auto& l : parts) p.push_back(l->next());
      for (int64_t i = 0; i < 2; ++i) {
        std::vector<int32_t> in, tg;
        for (const auto& b : p) {
          EXPECT_EQ(b->T, L / sp);
          EXPECT_EQ(b->doc, w->doc) << "document ids stay whole";
          in.insert(in.end(), b->inputs.begin() + i * b->T, b->inputs.begin() + (i + 1) * b->T);
          tg.insert(tg.end(), b->targets.begin() + i * b->T, b->targets.begin() + (i + 1) * b->T);
        }
        EXPECT_TRUE(std::equal(in.begin(), in.end(), w->inputs.begin() + i * L)) << "sp " << sp;
        EXPECT_TRUE(std::equal(tg.begin(), tg.end(), w->targets.begin() + i * L)) << "sp " << sp;
      }
    }
  }
}

// A zigzag layout's ranges: each rank's tokens, put back at their positions, give the sample.
TEST(Loader, SequenceParallelRangesPutBackGiveTheSample) {
  Fixture f("loader_zigzag");
  const int L = 24;
  const auto src = make_sample_source(hdf5_config(f.dir, L), f.ds.get());
  const std::vector<std::vector<std::pair<int64_t, int64_t>>> ranges{{{0, 6}, {18, 24}},
                                                                     {{6, 12}, {12, 18}}};
  Loader whole(*src, L, 2, 1, {}, 2);
  std::vector<std::unique_ptr<Loader>> parts;
  for (int r = 0; r < 2; ++r)
    parts.push_back(std::make_unique<Loader>(*src, L, 2, 1, LoaderGrid{0, 1, r, 2, ranges[r]}, 2));
  for (int step = 0; step < 3; ++step) {
    const auto w = whole.next();
    std::vector<int32_t> in(w->inputs.size()), tg(w->targets.size());
    for (int r = 0; r < 2; ++r) {
      const auto b = parts[r]->next();
      for (int64_t i = 0; i < 2; ++i) {
        int64_t at = i * b->T;
        for (const auto& [first, last] : ranges[r])
          for (int64_t p = first; p < last; ++p, ++at) {
            in[i * L + p] = b->inputs[at];
            tg[i * L + p] = b->targets[at];
          }
      }
    }
    EXPECT_EQ(in, w->inputs);
    EXPECT_EQ(tg, w->targets);
  }
  EXPECT_THROW(Loader(*src, L, 2, 1, LoaderGrid{0, 1, 0, 2, {{0, 5}}}, 2), Error)
      << "ranges that hold the wrong number of positions";
  EXPECT_THROW(Loader(*src, L, 2, 1, LoaderGrid{0, 1, 0, 2, {{0, 8}, {4, 8}}}, 2), Error)
      << "overlapping ranges";
}

TEST(Loader, RestoredStateContinuesTheSameSequence) {
  Fixture f("loader_state");
  const int L = 16;
  const auto src = make_sample_source(hdf5_config(f.dir, L), f.ds.get());
  Loader a(*src, L, 2, 2, {}, 3);
  for (int i = 0; i < 5; ++i) a.next();
  const std::string saved = a.state().to_json();
  std::vector<std::vector<int32_t>> rest;
  for (int i = 0; i < 7; ++i) rest.push_back(a.next()->inputs);

  Loader b(*src, L, 2, 2, {}, 2);
  b.next();  // anywhere: restore replaces the position and the queue
  b.restore(LoaderState::from_json(saved));
  for (int i = 0; i < 7; ++i) EXPECT_EQ(b.next()->inputs, rest[i]) << "step " << i;

  // A grid change keeps the global position: dp = 2 continues with the next samples.
  Loader r0(*src, L, 1, 2, {0, 2, 0, 1, {}}, 2), r1(*src, L, 1, 2, {1, 2, 0, 1, {}}, 2);
  r0.restore(LoaderState::from_json(saved));
  r1.restore(LoaderState::from_json(saved));
  EXPECT_EQ(r0.next()->samples.front(), LoaderState::from_json(saved).next_sample);
  EXPECT_EQ(r1.next()->samples.front(), LoaderState::from_json(saved).next_sample + 2);

  LoaderState other = LoaderState::from_json(saved);
  other.samples_per_epoch += 1;
  EXPECT_CONTAINS(test::error_of([&] { b.restore(other); }), "samples per epoch");
  EXPECT_CONTAINS(test::error_of([&] { LoaderState::from_json("{\"next\": 1}"); }),
                  "malformed");
}

// Document ids of a packed window: a new document starts after each EOS.
TEST(Loader, DocumentIdsFollowEos) {
  Fixture f("loader_docs");
  const int L = 64;
  const auto src = make_sample_source(hdf5_config(f.dir, L), f.ds.get());
  std::vector<int32_t> in(L), tg(L), doc(L);
  for (int64_t s = 0; s < 20; ++s) {
    src->read(s, {in.data(), tg.data(), doc.data()});
    EXPECT_EQ(doc[0], 0);
    for (int p = 1; p < L; ++p) EXPECT_EQ(doc[p], doc[p - 1] + (in[p - 1] == 257)) << p;
  }
}

TEST(Loader, DocumentSamplesTruncateOrPadAndCarryTheirLabel) {
  const std::string dir = test::temp_dir("loader_docmode");
  auto shards = packed_shards(3, 2, 15, 40);
  std::vector<std::vector<int32_t>> labels(2);
  for (int s = 0; s < 2; ++s)
    for (int d = 0; d < 15; ++d) labels[s].push_back((s * 15 + d) % 3);
  test::write_dataset(dir, test::byte_attrs(), shards, labels, {"a", "b", "c"});
  Dataset ds(dir);
  std::vector<Doc> docs(shards[0]);
  docs.insert(docs.end(), shards[1].begin(), shards[1].end());
  const int L = 20;
  for (Objective obj : {Objective::causal_lm, Objective::classify}) {
    Config cfg = hdf5_config(dir, L, Packing::doc);
    cfg.objective = obj;
    cfg.model.n_classes = 3;
    const auto src = make_sample_source(cfg, &ds);
    ASSERT_EQ(src->samples_per_epoch(), 30);
    std::set<int> seen;
    std::vector<int32_t> in(L), tg(L), doc(L);
    for (int64_t s = 0; s < 30; ++s) {
      src->read(s, {in.data(), tg.data(), doc.data()});
      int found = -1;  // which document: the one whose prefix the inputs are
      for (int d = 0; d < 30 && found < 0; ++d) {
        const int64_t n = std::min<int64_t>(int64_t(docs[d].size()), L);
        bool ok = std::equal(in.begin(), in.begin() + n, docs[d].begin());
        for (int p = int(n); p < L; ++p) ok = ok && in[p] == 258;
        if (ok && !seen.count(d)) found = d;
      }
      ASSERT_GE(found, 0) << "sample " << s;
      seen.insert(found);
      const Doc& d = docs[found];
      const int64_t n_in = std::min<int64_t>(int64_t(d.size()), L);
      for (int p = 0; p < L; ++p) EXPECT_EQ(doc[p], p < n_in ? 0 : 1);
      if (obj == Objective::classify) {
        EXPECT_EQ(tg[0], found % 3);
        EXPECT_EQ(std::count(tg.begin(), tg.end(), kIgnoreIndex), L - 1);
      } else {
        for (int p = 0; p < L; ++p)
          EXPECT_EQ(tg[p], p + 1 < int64_t(d.size()) ? int32_t(d[p + 1]) : kIgnoreIndex);
      }
    }
  }
}

// Labels index the class head and offsets address tokens: a shard with a label outside
// model.n_classes or offsets that go backwards stops the loader with a message naming it.
TEST(Loader, BadLabelsAndOffsetsAreNamed) {
  const std::string dir = test::temp_dir("loader_badlabel");
  auto shards = packed_shards(7, 1, 10, 20);
  std::vector<std::vector<int32_t>> labels{{0, 1, 2, 0, 1, 5, 0, 1, 2, 0}};  // 5: no such class
  test::write_dataset(dir, test::byte_attrs(), shards, labels, {"a", "b", "c"});
  {
    Dataset ds(dir);
    Config cfg = hdf5_config(dir, 16, Packing::doc);
    cfg.objective = Objective::classify;
    cfg.model.n_classes = 3;
    const auto src = make_sample_source(cfg, &ds);
    std::vector<int32_t> in(16), tg(16), doc(16);
    const std::string msg = test::error_of([&] {
      for (int64_t s = 0; s < src->samples_per_epoch(); ++s)
        src->read(s, {in.data(), tg.data(), doc.data()});
    });
    EXPECT_CONTAINS(msg, "label 5");
    EXPECT_CONTAINS(msg, "model.n_classes");
  }  // closed, so the test can rewrite the shard

  const std::string shard = dir + "/shard_00000.h5";
  test::write_u64(shard, "doc_offsets", 4, 1);  // below offset 3: document 3 ends before it starts
  Dataset bad(dir);
  int64_t first = 0, last = 0;
  const std::string msg = test::error_of([&] { bad.doc_range(3, &first, &last); });
  EXPECT_CONTAINS(msg, shard);
  EXPECT_CONTAINS(msg, "doc_offsets[3..4]");
}

TEST(Loader, BadDataStopsWithAMessageNamingIt) {
  Fixture f("loader_bad");
  // The model's vocabulary is smaller than the dataset's.
  Config cfg = hdf5_config(f.dir, 16);
  cfg.model.vocab_size = 200;
  std::string msg;
  try {
    make_sample_source(cfg, f.ds.get());
  } catch (const ConfigError& e) {
    msg = e.what();
  }
  EXPECT_CONTAINS(msg, "model.vocab_size");
  EXPECT_CONTAINS(msg, f.dir);
  // A window longer than the dataset.
  cfg = hdf5_config(f.dir, int(f.stream.size()));
  msg = test::error_of([&] { make_sample_source(cfg, f.ds.get()); });
  EXPECT_CONTAINS(msg, "data.seq_len");
  EXPECT_CONTAINS(msg, std::to_string(f.stream.size()) + " tokens");
  // An id beyond the vocabulary, found while reading: a shard forged to claim a smaller
  // vocabulary than its ids use. The loader's next() throws, naming the shard and the id.
  const std::string dir = test::temp_dir("loader_badid");
  ShardAttrs wide = test::byte_attrs();
  wide.vocab_size = 300;
  auto shards = packed_shards(4, 1, 30, 30);
  shards[0][17][3] = 290;
  test::write_dataset(dir, wide, shards);
  const std::string shard = dir + "/shard_00000.h5";
  test::set_int_attr(shard, "vocab_size", 259);
  Manifest m = read_manifest(dir);
  m.attrs.vocab_size = 259;
  m.shards[0].checksum = hash_file(shard);
  write_manifest(dir, m);
  Dataset ds(dir);
  cfg = hdf5_config(dir, 16);
  const auto src = make_sample_source(cfg, &ds);
  Loader loader(*src, 16, 4, 1, {}, 2);
  msg = test::error_of([&] {
    for (int64_t s = 0; s <= src->samples_per_epoch(); s += 4) loader.next();
  });
  EXPECT_CONTAINS(msg, "shard_00000.h5");
  EXPECT_CONTAINS(msg, "290");
  EXPECT_CONTAINS(msg, "model.vocab_size");
}

}  // namespace
}  // namespace longctx
