// kvcache as an evaluation task: the measured cache of eval.kvcache_tokens decoded tokens.
#include "eval/kvcache_eval.h"
#include "eval/tasks.h"

namespace longctx {

ojson eval_kvcache(const Config& cfg, const ParamStore<float>& params) {
  const nlohmann::json j = kvcache_eval(cfg, params, cfg.eval.kvcache_tokens);
  ojson r = {{"task", "kvcache"}};
  for (auto it = j.begin(); it != j.end(); ++it) r[it.key()] = it.value();
  return r;
}

}  // namespace longctx
