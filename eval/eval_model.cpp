#include "eval/eval_model.h"

#include <algorithm>

#include "core/error.h"
#include "trainer/checkpoint_file.h"

namespace longctx {

CheckpointModel load_checkpoint_model(const std::string& path) {
  CheckpointState s = read_checkpoint(path);
  CheckpointModel m;
  m.cfg = parse_config(s.config_yaml, {}, path);
  m.step = s.step;
  m.path = path;
  for (const ParamInfo& p : s.infos) m.params.add(p.name, p.shape, p.decay);
  m.params.values = std::move(s.values);  // the readers lay values out as ParamStore does
  LONGCTX_CHECK(int64_t(m.params.values.size()) == m.params.size(), "checkpoint '", path,
                "': ", m.params.values.size(), " values for ", m.params.size(), " parameters");
  return m;
}

std::unique_ptr<Transformer<float>> build_eval_model(const Config& cfg,
                                                     const ParamStore<float>& params, int64_t B,
                                                     int64_t T) {
  if (T > cfg.model.max_seq_len)
    throw Error(str("a sequence of ", T, " tokens is longer than the model's max_seq_len (",
                    cfg.model.max_seq_len, ")"));
  auto model = std::make_unique<Transformer<float>>(cfg.model, cfg.attention, B, T,
                                                    Recompute::none, cfg.objective, cfg.run.seed);
  ParamStore<float>& dst = model->params();
  if (dst.infos().size() != params.infos().size())
    throw Error(str("the parameters hold ", params.infos().size(), " tensors; the config's model has ",
                    dst.infos().size()));
  for (const ParamInfo& p : dst.infos()) {
    const ParamInfo& q = params.infos()[size_t(params.find(p.name))];
    if (!(q.shape == p.shape))
      throw Error(str("parameter '", p.name, "' has shape ", q.shape.str(), "; the config's model needs ",
                      p.shape.str()));
    std::copy_n(params.values.data() + q.offset, p.shape.numel(), dst.values.data() + p.offset);
  }
  return model;
}

}  // namespace longctx
