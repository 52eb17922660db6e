// The path from a folder of text to a training run: `longctx tokenize`, then `longctx train` on
// the shards (packed with a document mask, per-document global tokens; one labeled document per
// sample for classification), and the errors a user sees when the data does not fit.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/fs.h"
#include "core/rng.h"
#include "tests/test_util.h"

namespace longctx {
namespace {


using test::read_metrics;
using test::run_cli;

// Documents a small model learns fast: each repeats a short random phrase.
std::string corpus(const std::string& name, int docs) {
  const std::string dir = test::temp_dir(name);
  make_dirs(dir + "/text/more");
  Rng rng(3);
  for (int d = 0; d < docs; ++d) {
    std::string phrase;
    for (int k = 0; k < 6; ++k) phrase += char('a' + rng.below(8));
    std::string doc;
    for (int r = 0, n = 20 + int(rng.below(40)); r < n; ++r) doc += phrase + " ";
    std::ofstream(dir + (d % 3 ? "/text/" : "/text/more/") + "doc" + std::to_string(d) + ".txt")
        << doc;
  }
  return dir;
}

const char* kTiny =
    " --set model.vocab_size=259 --set model.d_model=64 --set model.n_layer=2"
    " --set model.n_head=2 --set model.d_ff=128 --set train.micro_batch=4 --set log.every=1"
    " --set train.lr=3e-3 --set train.warmup=2";

TEST(DataCli, TokenizeThenTrainWithDocumentMaskAndGlobals) {
  const std::string dir = corpus("e2e_text", 60);
  int code = 0;
  std::string out = run_cli("tokenize " + dir + "/text --out " + dir + "/tok --val-fraction 0.1", &code);
  ASSERT_EQ(code, 0) << out;
  out = run_cli("data verify " + dir + "/tok/train", &code);
  ASSERT_EQ(code, 0) << out;
  const std::string cfg = std::string(LONGCTX_SOURCE_DIR) + "/configs/text.yaml";
  for (const char* attn : {"--set attention.pattern=flash",
                           "--set attention.pattern=longformer --set attention.window=32"
                           " --set attention.block_size=16 --set attention.global_doc_starts=true"}) {
    const std::string run_dir = dir + (std::string(attn).find("flash") != std::string::npos
                                           ? "/run_flash" : "/run_longformer");
    out = run_cli("train " + cfg + kTiny + " --set data.train=" + dir + "/tok/train --set data.val=" +
                  dir + "/tok/val --set data.seq_len=128 --set train.steps=25 --set run.out_dir=" +
                  run_dir + " " + attn,
              &code);
    ASSERT_EQ(code, 0) << out;
    const auto rows = read_metrics(run_dir);
    ASSERT_EQ(rows.size(), 25u) << attn;
    EXPECT_TRUE(rows[0].contains("data_wait_ms"));
    const double first = rows[0]["loss"], last = rows.back()["loss"];
    EXPECT_LT(last, 0.6 * first) << attn << ": the repeated phrases are learnable";
  }
}

TEST(DataCli, ClassifyOnLabeledDocuments) {
  const std::string dir = test::temp_dir("e2e_labels");
  {
    std::ofstream f(dir + "/docs.jsonl");
    Rng rng(5);
    for (int d = 0; d < 80; ++d) {  // the label is which letter the text repeats
      const bool x = rng.below(2);
      std::string text(20 + rng.below(30), x ? 'x' : 'y');
      f << nlohmann::json{{"text", text}, {"label", x ? "ex" : "why"}}.dump() << "\n";
    }
  }
  int code = 0;
  std::string out = run_cli("tokenize " + dir + "/docs.jsonl --label-field label --out " + dir + "/tok",
                        &code);
  ASSERT_EQ(code, 0) << out;
  const std::string cfg = std::string(LONGCTX_SOURCE_DIR) + "/configs/text.yaml";
  out = run_cli("train " + cfg + kTiny + " --set data.train=" + dir +
                "/tok/train --set data.val= --set objective=classify --set data.packing=doc"
                " --set data.doc_mask=false --set model.n_classes=2 --set data.seq_len=64"
                " --set train.steps=30 --set run.out_dir=" + dir + "/run",
            &code);
  ASSERT_EQ(code, 0) << out;
  const auto rows = read_metrics(dir + "/run");
  ASSERT_EQ(rows.size(), 30u);
  EXPECT_LT(double(rows.back()["loss"]), 0.5 * double(rows[0]["loss"]));
}

TEST(DataCli, DataThatDoesNotFitIsNamed) {
  const std::string dir = corpus("e2e_bad", 6);
  int code = 0;
  std::string out = run_cli("tokenize " + dir + "/text --out " + dir + "/tok", &code);
  ASSERT_EQ(code, 0) << out;
  const std::string cfg = std::string(LONGCTX_SOURCE_DIR) + "/configs/text.yaml";
  const std::string base = "train " + cfg + kTiny + " --set data.val= --set run.out_dir=" + dir +
                           "/run --set data.train=";
  out = run_cli(base + dir + "/tok/train --set model.vocab_size=256", &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("model.vocab_size"), std::string::npos) << out;
  out = run_cli(base + dir + "/nothing", &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find(dir + "/nothing"), std::string::npos) << out;
  out = run_cli(base + dir + "/tok/train --set data.seq_len=4000", &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("data.seq_len"), std::string::npos) << out;
}

}  // namespace
}  // namespace longctx
