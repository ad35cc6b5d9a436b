#include "engine/train/distill.hpp"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/base/error.hpp"
#include "engine/base/log.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/config.hpp"
#include "engine/train/config.hpp"
#include "engine/train/preference.hpp"

namespace vkt::train {

namespace fs = std::filesystem;

namespace {
std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// What decides the token ids: the model's vocab and merges, and the added tokens (id and content).
nlohmann::json token_identity(const fs::path& path) {
  nlohmann::json document = nlohmann::json::parse(read_text(path), nullptr, false);
  if (document.is_discarded()) throw UserError(path.string() + ": not valid JSON", "give a tokenizer.json file");
  nlohmann::json identity = {{"vocab", document["model"].value("vocab", nlohmann::json())},
                             {"merges", document["model"].value("merges", nlohmann::json())}};
  nlohmann::json added = nlohmann::json::array();
  for (const auto& token : document.value("added_tokens", nlohmann::json::array()))
    added.push_back({token.value("id", -1), token.value("content", "")});
  identity["added_tokens"] = added;
  return identity;
}
}  // namespace

DistillSettings distill_settings(const TrainConfig& c) {
  DistillSettings settings;
  settings.teacher = c.teacher;
  settings.teacher_adapter = c.teacher_adapter;
  settings.temperature = c.distill_temperature;
  settings.alpha = c.distill_alpha;
  return settings;
}

bool is_distill(const TrainConfig& c) { return c.objective == enum_name(objective_names(), Objective::distill); }

void validate_distill(const TrainConfig& c) {
  if (!is_distill(c)) {
    if (!c.teacher.empty() || !c.teacher_adapter.empty())
      throw UserError("--teacher and --teacher-adapter are for --objective distill", "add --objective distill");
    return;
  }
  if (c.teacher.empty())
    throw UserError("--objective distill needs --teacher DIR (the model to distil from)",
                    "give the teacher's HF folder; it must use the student's tokenizer");
  if (!(c.distill_temperature > 0 && std::isfinite(c.distill_temperature)))
    throw UserError("--distill-temperature must be a positive number", "2 is a common choice; 1 is the plain softmax");
  if (!(c.distill_alpha >= 0 && c.distill_alpha <= 1))
    throw UserError("--distill-alpha must be in [0, 1]",
                    "it weighs the teacher's KL term; 1 - alpha weighs the cross-entropy on the data");
}

void check_same_tokenizer(const fs::path& student_dir, const fs::path& teacher_dir) {
  const fs::path student = student_dir / "tokenizer.json", teacher = teacher_dir / "tokenizer.json";
  const bool student_has = fs::exists(student), teacher_has = fs::exists(teacher);
  const std::string both = student.string() + " and " + teacher.string();
  const char* hint =
      "distillation compares the two models' next-token distributions token by token: give a teacher "
      "of the student's family (the same tokenizer.json)";
  if (student_has != teacher_has)
    throw UserError("cannot check that the student and the teacher share a tokenizer: only one of " + both + " exists",
                    hint);
  if (student_has && read_text(student) != read_text(teacher) && token_identity(student) != token_identity(teacher))
    throw UserError("the student's and the teacher's tokenizers differ (vocabulary, merges or added tokens): " + both,
                    hint);
  const model::ModelConfig student_config = model::load_model_config(student_dir);
  const model::ModelConfig teacher_config = model::load_model_config(teacher_dir);
  if (student_config.vocab_size != teacher_config.vocab_size)
    throw UserError("the student's vocab_size (" + std::to_string(student_config.vocab_size) + ", " +
                        (student_dir / "config.json").string() + ") differs from the teacher's (" +
                        std::to_string(teacher_config.vocab_size) + ", " + (teacher_dir / "config.json").string() + ")",
                    hint);
}

spec::RunSettings teacher_run_settings(const spec::RunSettings& student, const DistillSettings& settings) {
  spec::RunSettings s;
  s.training = false;
  s.kv_cache_tokens = 0;
  s.batch = student.batch;
  s.seq_len = student.seq_len;
  s.logits_chunk_bytes = student.logits_chunk_bytes;
  s.activation_dtype = student.activation_dtype;
  s.dtype = student.dtype;
  s.method = student.method == spec::Method::qlora ? spec::Method::qlora : spec::Method::lora;
  s.base_format = student.base_format == kernels::WeightFormat::gguf ? kernels::WeightFormat::f32 : student.base_format;
  s.double_quant = student.double_quant;
  s.quant_block = student.quant_block;
  if (!settings.teacher_adapter.empty()) {
    const model::AdapterFile adapter = model::load_adapter_config(settings.teacher_adapter);
    s.with_adapter = true;
    s.lora_r = adapter.settings.rank;
    s.target_modules = adapter.settings.targets;
    s.lora_layers = adapter.settings.layers;
  }
  return s;
}

plan::MemoryPlan teacher_plan(const spec::RunSettings& student, const DistillSettings& settings) {
  return plan::make_plan(model::model_shape(model::load_model_config(settings.teacher)),
                         teacher_run_settings(student, settings));
}

std::unique_ptr<Teacher> open_teacher(vk::Context& context, model::ModelSession& student,
                                      const DistillSettings& settings) {
  auto teacher = std::make_unique<Teacher>();
  const spec::RunSettings run = teacher_run_settings(student.plan.settings, settings);
  if (run.with_adapter) teacher->lora = model::load_adapter_config(settings.teacher_adapter).settings;
  teacher->session = model::open_model(context, settings.teacher, run, run.with_adapter ? &teacher->lora : nullptr);
  if (teacher->session->config.vocab_size != student.config.vocab_size)
    throw UserError("the teacher's vocab_size (" + std::to_string(teacher->session->config.vocab_size) + ", " +
                        (settings.teacher / "config.json").string() + ") differs from the student's (" +
                        std::to_string(student.config.vocab_size) + ")",
                    "give a teacher with the student's tokenizer and vocabulary");
  if (run.with_adapter)
    model::load_adapter_weights(context, *teacher->session->buffers, teacher->session->plan.shape, teacher->lora,
                                settings.teacher_adapter);
  student.transformer->set_distill_teacher(teacher->session->transformer.get(),
                                           static_cast<float>(settings.temperature),
                                           static_cast<float>(settings.alpha));
  log::info("distillation: teacher " + settings.teacher.string() + " (" +
            std::to_string(teacher->session->config.num_hidden_layers) + " layers, hidden " +
            std::to_string(teacher->session->config.hidden_size) + "), T " + std::to_string(settings.temperature) +
            ", alpha " + std::to_string(settings.alpha));
  return teacher;
}

}  // namespace vkt::train
