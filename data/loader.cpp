#include "data/loader.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace longctx {

std::string LoaderState::to_json() const {
  return nlohmann::json{{"next_sample", next_sample}, {"samples_per_epoch", samples_per_epoch}}
      .dump();
}

LoaderState LoaderState::from_json(const std::string& text) {
  LoaderState st;
  try {
    const auto j = nlohmann::json::parse(text);
    st.next_sample = j.at("next_sample").get<int64_t>();
    st.samples_per_epoch = j.at("samples_per_epoch").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(str("loader state '", text, "' is malformed: ", e.what()));
  }
  if (st.next_sample < 0) throw Error(str("loader state '", text, "': negative next_sample"));
  return st;
}

Loader::Loader(const SampleSource& source, int64_t seq_len, int64_t micro_batch,
               int64_t grad_accum, const LoaderGrid& grid, int prefetch)
    : src_(source), T_(seq_len), B_(micro_batch), A_(grad_accum),
      G_(int64_t(grid.dp_size) * micro_batch * grad_accum), grid_(grid),
      capacity_(size_t(std::max(prefetch, 1))) {
  LONGCTX_CHECK(grid.dp_size >= 1 && grid.dp_rank >= 0 && grid.dp_rank < grid.dp_size &&
                    grid.sp_size >= 1 && grid.sp_rank >= 0 && grid.sp_rank < grid.sp_size,
                "loader: rank outside its grid (dp ", grid.dp_rank, "/", grid.dp_size, ", sp ",
                grid.sp_rank, "/", grid.sp_size, ")");
  LONGCTX_CHECK(seq_len % grid.sp_size == 0, "loader: seq_len ", seq_len,
                " is not divisible by sp = ", grid.sp_size);
  if (grid_.sp_ranges.empty()) {
    const int64_t Ts = seq_len / grid.sp_size;
    grid_.sp_ranges = {{grid.sp_rank * Ts, (grid.sp_rank + 1) * Ts}};
  }
  int64_t held = 0, prev_end = 0;
  for (const auto& [first, last] : grid_.sp_ranges) {
    LONGCTX_CHECK(prev_end <= first && first <= last && last <= seq_len, "loader: sp range [",
                  first, ", ", last, ") is not ascending, disjoint and inside the sequence of ",
                  seq_len);
    held += last - first;
    prev_end = last;
  }
  LONGCTX_CHECK(held == seq_len / grid.sp_size, "loader: the sp ranges hold ", held,
                " positions, not seq_len / sp = ", seq_len / grid.sp_size);
  start(0);
}

Loader::~Loader() { stop(); }

std::shared_ptr<StepBatch> Loader::make_batch(int64_t s0) const {
  auto b = std::make_shared<StepBatch>();
  const int64_t n = A_ * B_, Ts = T_ / grid_.sp_size;
  b->first_sample = s0;
  b->A = A_;
  b->B = B_;
  b->T = Ts;
  b->T_full = T_;
  b->inputs.resize(size_t(n * Ts));
  b->targets.resize(size_t(n * Ts));
  if (src_.has_documents()) b->doc.resize(size_t(n * T_));
  b->samples.resize(size_t(n));
  std::vector<int32_t> in(static_cast<size_t>(T_)), tg(static_cast<size_t>(T_));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = s0 + int64_t(grid_.dp_rank) * n + i;
    b->samples[i] = s;
    SampleView v{in.data(), tg.data(), b->doc.empty() ? nullptr : b->doc.data() + i * T_};
    src_.read(s, v);
    int64_t at = i * Ts;
    for (const auto& [first, last] : grid_.sp_ranges) {
      std::copy(in.begin() + first, in.begin() + last, b->inputs.begin() + at);
      std::copy(tg.begin() + first, tg.begin() + last, b->targets.begin() + at);
      at += last - first;
    }
  }
  return b;
}

// Produces steps from `first` on until stopped; an error ends production and is handed over.
void Loader::run(int64_t first) {
  for (int64_t s0 = first;; s0 += G_) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || queue_.size() < capacity_; });
      if (stop_) return;
    }
    std::shared_ptr<StepBatch> b;
    try {
      b = make_batch(s0);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
      cv_.notify_all();
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(b));
    cv_.notify_all();
  }
}

void Loader::start(int64_t next_sample) {
  next_sample_ = next_sample;
  stop_ = false;
  error_ = nullptr;
  queue_.clear();
  thread_ = std::thread([this, next_sample] { run(next_sample); });
}

void Loader::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const StepBatch> Loader::next() {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty() || error_; });
  wait_ms_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count();
  if (queue_.empty()) std::rethrow_exception(error_);
  std::shared_ptr<const StepBatch> b = std::move(queue_.front());
  queue_.pop_front();
  next_sample_ = b->first_sample + G_;
  cv_.notify_all();
  return b;
}

double Loader::take_wait_ms() {
  const double w = wait_ms_;
  wait_ms_ = 0;
  return w;
}

LoaderState Loader::state() const {
  return LoaderState{next_sample_, src_.samples_per_epoch()};
}

void Loader::restore(const LoaderState& st) {
  if (st.samples_per_epoch != src_.samples_per_epoch())
    throw Error(str("the saved loader position is for data with ", st.samples_per_epoch,
                    " samples per epoch; this data has ", src_.samples_per_epoch(),
                    " (a different dataset or data.seq_len)"));
  stop();
  start(st.next_sample);
}

}  // namespace longctx
