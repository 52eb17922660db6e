// Checkpoint files: what write_checkpoint writes, read_checkpoint gives back bit for bit; every
// damaged or foreign file is refused with its name and the problem; a failed write leaves the
// previous file and no temporary one.
#include "trainer/checkpoint_file.h"

#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/hdf5_util.h"
#include "tests/shard_fixtures.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

namespace fs = std::filesystem;
using test::error_of;

// Tensors in an order that is not alphabetical, names with dots, every rank, a zero dimension.
CheckpointState sample_state(uint64_t seed, bool moments = true, int64_t scale = 1) {
  CheckpointState s;
  s.step = (int64_t(1) << 40) + 7;
  s.tokens_seen = (int64_t(1) << 50) + 3;
  s.config_yaml = "model:\n  d_model: 8\nrun:\n  name: \"quote \\\" and ünïcode\"\n";
  s.loader_json = R"({"next_sample":123,"samples_per_epoch":4567})";
  s.rng_json = R"({"seed":1234})";
  const std::vector<std::pair<std::string, Shape>> tensors = {
      {"wte", {11 * scale, 8}},
      {"blocks.10.attn.wq", {8, 4}},
      {"blocks.2.ln1.w", {8}},
      {"empty.rows", {3, 0}},
      {"a.cube", {2, 3, 4}},
      {"a.four", {1, 2, 1, 3}},
      {"ln_f.b", {8}}};
  int64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    s.infos.push_back({tensors[i].first, tensors[i].second, offset, i % 2 == 0});
    offset += tensors[i].second.numel();
  }
  s.values = test::randn<float>(offset, seed);
  if (moments) {
    s.m = test::randn<float>(offset, seed + 1);
    s.v = test::randn<float>(offset, seed + 2);
    for (float& x : s.v) x = x * x;
  }
  return s;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expect_same_header(const CheckpointState& got, const CheckpointState& want) {
  EXPECT_EQ(got.step, want.step);
  EXPECT_EQ(got.tokens_seen, want.tokens_seen);
  EXPECT_EQ(got.config_yaml, want.config_yaml);
  EXPECT_EQ(got.loader_json, want.loader_json);
  EXPECT_EQ(got.rng_json, want.rng_json);
  ASSERT_EQ(got.infos.size(), want.infos.size());
  for (size_t i = 0; i < want.infos.size(); ++i) {
    EXPECT_EQ(got.infos[i].name, want.infos[i].name) << i;
    EXPECT_TRUE(got.infos[i].shape == want.infos[i].shape)
        << want.infos[i].name << ": " << got.infos[i].shape.str();
    EXPECT_EQ(got.infos[i].offset, want.infos[i].offset) << want.infos[i].name;
    EXPECT_EQ(got.infos[i].decay, want.infos[i].decay) << want.infos[i].name;
  }
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// The file offset of a contiguous dataset's data.
uint64_t data_offset(const std::string& path, const std::string& dataset) {
  auto lock = hdf5_lock();
  H5Handle f = h5_file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  H5Handle d = h5_dataset(H5Dopen2(f.get(), dataset.c_str(), H5P_DEFAULT));
  const haddr_t at = H5Dget_offset(d.get());
  EXPECT_NE(at, HADDR_UNDEF) << dataset;
  return at;
}

void flip_bit(const std::string& path, uint64_t at, int bit) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(std::streamoff(at));
  char c = 0;
  f.read(&c, 1);
  c = char(c ^ (1 << bit));
  f.seekp(std::streamoff(at));
  f.write(&c, 1);
}

// Applies `edit` to the open file (read-write).
template <class F>
void edit_file(const std::string& path, F&& edit) {
  auto lock = hdf5_lock();
  H5Handle f = h5_file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
  ASSERT_TRUE(f.valid());
  edit(f.get());
}

TEST(CheckpointFile, RoundTripBitForBit) {
  const std::string path = test::temp_dir("ckpt_roundtrip") + "/step_00000010.h5";
  const CheckpointState s = sample_state(1);
  write_checkpoint(path, s);
  const CheckpointState r = read_checkpoint(path);
  expect_same_header(r, s);
  EXPECT_TRUE(r.has_moments);
  EXPECT_TRUE(same_bits(r.values, s.values));
  EXPECT_TRUE(same_bits(r.m, s.m));
  EXPECT_TRUE(same_bits(r.v, s.v));
  // Overwriting an existing checkpoint replaces it.
  const CheckpointState s2 = sample_state(7, /*moments=*/false);
  write_checkpoint(path, s2);
  const CheckpointState r2 = read_checkpoint(path);
  EXPECT_FALSE(r2.has_moments);
  EXPECT_TRUE(r2.m.empty() && r2.v.empty());
  EXPECT_TRUE(same_bits(r2.values, s2.values));
}

// A writer may hand tensors at offsets in any order; the reader lays them out as ParamStore does.
TEST(CheckpointFile, OffsetsAreReadInStoreLayout) {
  const std::string path = test::temp_dir("ckpt_offsets") + "/c.h5";
  CheckpointState s;
  s.infos = {{"b", {2}, 3, true}, {"a", {3}, 0, false}};
  s.values = {1, 2, 3, 4, 5};
  write_checkpoint(path, s);
  const CheckpointState r = read_checkpoint(path);
  ASSERT_EQ(r.infos.size(), 2u);
  EXPECT_EQ(r.infos[0].name, "b");
  EXPECT_EQ(r.infos[0].offset, 0);
  EXPECT_EQ(r.infos[1].offset, 2);
  EXPECT_EQ(r.values, (std::vector<float>{4, 5, 1, 2, 3}));
}

TEST(CheckpointFile, HeaderWithoutData) {
  const std::string path = test::temp_dir("ckpt_header") + "/c.h5";
  const CheckpointState s = sample_state(2);
  write_checkpoint(path, s);
  const CheckpointState h = read_checkpoint_header(path);
  expect_same_header(h, s);
  EXPECT_TRUE(h.has_moments);
  EXPECT_TRUE(h.values.empty() && h.m.empty() && h.v.empty());
}

TEST(CheckpointFile, TruncatedFilesAreRefused) {
  const std::string dir = test::temp_dir("ckpt_truncated");
  const std::string good = dir + "/good.h5";
  write_checkpoint(good, sample_state(3));
  const auto size = fs::file_size(good);
  for (uint64_t cut : {uint64_t(0), uint64_t(7), uint64_t(600), size / 2, size - 1}) {
    const std::string path = dir + "/cut_" + std::to_string(cut) + ".h5";
    fs::copy_file(good, path);
    fs::resize_file(path, cut);
    for (bool header : {false, true}) {
      const std::string e =
          error_of([&] { header ? read_checkpoint_header(path) : read_checkpoint(path); });
      EXPECT_CONTAINS(e, "checkpoint '" + path + "'");
      EXPECT_TRUE(e.find("truncated") != std::string::npos ||
                  e.find("not an HDF5 file") != std::string::npos)
          << "cut at " << cut << ": " << e;
    }
  }
}

TEST(CheckpointFile, FlippedBitFailsItsChecksum) {
  const std::string dir = test::temp_dir("ckpt_bitflip");
  const CheckpointState s = sample_state(4);
  for (const char* dataset : {"/params/blocks.10.attn.wq", "/optim/v/wte", "/optim/m/a.four"}) {
    const std::string path = dir + "/c.h5";
    write_checkpoint(path, s);
    flip_bit(path, data_offset(path, dataset) + 5, 3);
    EXPECT_EQ(error_of([&] { read_checkpoint(path); }),
              str("checkpoint '", path, "': ", dataset, " fails its checksum (the file is damaged)"));
    // The header reader reads no data: it cannot see the flip.
    EXPECT_NO_THROW(read_checkpoint_header(path));
  }
}

TEST(CheckpointFile, ForeignFilesAreRefused) {
  const std::string dir = test::temp_dir("ckpt_foreign");
  const std::string text = dir + "/notes.h5";
  std::ofstream(text) << "not a checkpoint at all, just text that is long enough to be read\n";
  EXPECT_EQ(error_of([&] { read_checkpoint(text); }),
            "checkpoint '" + text + "': not an HDF5 file (not a checkpoint, or damaged)");

  const std::string shard = dir + "/shard.h5";
  test::write_shard(shard, test::byte_attrs(), test::make_docs(1, 3, 256, 20));
  EXPECT_EQ(error_of([&] { read_checkpoint_header(shard); }),
            "checkpoint '" + shard +
                "': format is 'longctx-tokens', expected 'longctx-checkpoint' (not a longctx "
                "checkpoint)");

  const std::string missing = dir + "/missing.h5";
  EXPECT_CONTAINS(error_of([&] { read_checkpoint(missing); }),
                  "checkpoint '" + missing + "': cannot open: No such file");
  EXPECT_CONTAINS(error_of([&] { read_checkpoint(dir); }), "is a directory");
}

TEST(CheckpointFile, MissingOrMismatchedPartsAreNamed) {
  const std::string dir = test::temp_dir("ckpt_parts");
  const std::string path = dir + "/c.h5";
  const CheckpointState s = sample_state(5);
  auto expect = [&](const std::string& problem) {
    for (bool header : {false, true})
      EXPECT_EQ(error_of([&] { header ? read_checkpoint_header(path) : read_checkpoint(path); }),
                "checkpoint '" + path + "': " + problem);
  };

  write_checkpoint(path, s);
  edit_file(path, [](hid_t f) { H5Ldelete(f, "/params/blocks.2.ln1.w", H5P_DEFAULT); });
  expect("has no dataset /params/blocks.2.ln1.w");

  write_checkpoint(path, s);
  edit_file(path, [](hid_t f) { H5Ldelete(f, "/optim/m", H5P_DEFAULT); });
  expect("has no group /optim/m");

  write_checkpoint(path, s);
  edit_file(path, [](hid_t f) { H5Adelete(f, "tokens_seen"); });
  expect("no attribute 'tokens_seen'");

  write_checkpoint(path, s);
  edit_file(path, [](hid_t f) {
    H5Adelete(f, "version");
    write_int_attr(f, "version", kCheckpointVersion + 1, H5T_STD_I32LE, "");
  });
  expect(str("version ", kCheckpointVersion + 1, " is not supported (this build reads version ",
             kCheckpointVersion, ")"));

  // The tensor list says one shape, the dataset has another.
  write_checkpoint(path, s);
  edit_file(path, [](hid_t f) {
    std::string params;
    read_string_attr(f, "params", "", &params);
    const std::string from = R"("shape":[8,4])", to = R"("shape":[4,8])";
    params.replace(params.find(from), from.size(), to);
    H5Adelete(f, "params");
    write_string_attr(f, "params", params, "");
  });
  expect("/params/blocks.10.attn.wq has shape [8, 4], the tensor list says [4, 8]");

  write_checkpoint(path, s);
  edit_file(path, [](hid_t f) {
    H5Handle d = h5_dataset(H5Dopen2(f, "/optim/v/ln_f.b", H5P_DEFAULT));
    H5Adelete(d.get(), "xxh3_128");
  });
  expect("/optim/v/ln_f.b has no checksum attribute 'xxh3_128'");
}

TEST(CheckpointFile, BadStatesAreRefusedBeforeWriting) {
  const std::string dir = test::temp_dir("ckpt_bad_state");
  CheckpointState s = sample_state(6);
  s.infos[1].name = "blocks/0";
  EXPECT_CONTAINS(error_of([&] { write_checkpoint(dir + "/c.h5", s); }),
                  "tensor name 'blocks/0' cannot be an HDF5 dataset name");
  s = sample_state(6);
  s.m.pop_back();
  EXPECT_CONTAINS(error_of([&] { write_checkpoint(dir + "/c.h5", s); }), "m and v hold");
  s = sample_state(6);
  s.values.push_back(0);
  EXPECT_CONTAINS(error_of([&] { write_checkpoint(dir + "/c.h5", s); }), "the tensors hold");
  EXPECT_TRUE(files_in(dir).empty());
}

// A write that fails (here: the file size limit, as on a full disk) removes its temporary file
// and leaves the previous checkpoint as it was.
TEST(CheckpointFile, FailedWriteKeepsThePreviousFile) {
  const std::string dir = test::temp_dir("ckpt_failed_write");
  const std::string path = dir + "/c.h5";
  const CheckpointState old = sample_state(8);
  write_checkpoint(path, old);
  const auto old_size = fs::file_size(path);
  const CheckpointState big = sample_state(9, true, /*scale=*/2000);  // ~0.5 MB of wte

  std::signal(SIGXFSZ, SIG_IGN);  // the write then fails with EFBIG instead of killing us
  rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  rlimit small = saved;
  small.rlim_cur = rlim_t(old_size * 2);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string e = error_of([&] { write_checkpoint(path, big); });
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
  std::signal(SIGXFSZ, SIG_DFL);

  EXPECT_CONTAINS(e, "cannot write checkpoint '" + path + "'");
  EXPECT_EQ(files_in(dir), std::vector<std::string>{"c.h5"});
  const CheckpointState r = read_checkpoint(path);
  expect_same_header(r, old);
  EXPECT_TRUE(same_bits(r.values, old.values));
  EXPECT_TRUE(same_bits(r.v, old.v));
}

TEST(CheckpointFile, UnwritablePlacesLeaveNothing) {
  const std::string dir = test::temp_dir("ckpt_unwritable");
  const std::string nowhere = dir + "/no/such/dir/c.h5";
  EXPECT_CONTAINS(error_of([&] { write_checkpoint(nowhere, sample_state(10)); }),
                  "cannot write checkpoint '" + nowhere + "'");
  EXPECT_TRUE(files_in(dir).empty());

  // The rename fails when a directory holds the name: the complete temporary file goes too.
  fs::create_directories(dir + "/taken.h5/inside");
  EXPECT_CONTAINS(error_of([&] { write_checkpoint(dir + "/taken.h5", sample_state(10)); }),
                  "cannot write checkpoint '" + dir + "/taken.h5': cannot rename");
  EXPECT_EQ(files_in(dir), std::vector<std::string>{"taken.h5"});
  EXPECT_TRUE(fs::is_directory(dir + "/taken.h5/inside"));
}

}  // namespace
}  // namespace longctx
