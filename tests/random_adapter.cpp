#include "tests/random_adapter.hpp"

#include <memory>

#include <nlohmann/json.hpp>

#include "engine/base/files.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/model/session.hpp"
#include "tests/support.hpp"

namespace vkt::test {

// A PEFT adapter for `base` with random A and B (B nonzero, unlike a fresh adapter).
std::filesystem::path random_adapter(const std::filesystem::path& base, const std::string& name, uint32_t rank,
                                     float alpha, bool rslora, const std::vector<spec::Module>& targets,
                                     uint32_t seed) {
  std::filesystem::path directory = test::temp_dir("adapter-" + name);
  model::ModelConfig config = model::load_model_config(base);
  spec::ModelShape shape = model::model_shape(config);
  std::vector<model::TensorToWrite> writes;
  uint32_t stream = 0;
  for (uint32_t layer = 0; layer < shape.layers; layer++)
    for (spec::Module module : targets)
      for (bool a : {true, false}) {
        uint64_t in = spec::module_in_features(shape, module), out = spec::module_out_features(shape, module);
        std::vector<uint64_t> dims = a ? std::vector<uint64_t>{rank, in} : std::vector<uint64_t>{out, rank};
        auto values = std::make_shared<std::vector<float>>(
            test::random_floats(dims[0] * dims[1], seed * 100 + stream++, -0.2f, 0.2f));
        writes.push_back({model::peft_tensor_name(shape, layer, module, a), model::FileDtype::F32, dims,
                          [values](model::TensorSink& sink) { sink.write(values->data(), values->size() * 4); }});
      }
  model::write_safetensors(directory / "adapter_model.safetensors", std::move(writes), {{"format", "pt"}});
  std::vector<std::string> names;
  for (spec::Module m : targets) names.push_back(spec::module_name(m));
  nlohmann::json adapter = {{"peft_type", "LORA"},
                            {"r", rank},
                            {"lora_alpha", alpha},
                            {"target_modules", names},
                            {"use_rslora", rslora},
                            {"bias", "none"},
                            {"base_model_name_or_path", base.string()}};
  write_file_atomically(directory / "adapter_config.json", adapter.dump(2));
  return directory;
}

}  // namespace vkt::test
