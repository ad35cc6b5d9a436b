#pragma once
// Which run an output folder holds. run.json's "identity" names the model (path and a cheap
// fingerprint: config.json's hash and the total size of its safetensors), the data (path and
// content hash) and every option that changes the training trajectory. A new run refuses a folder
// that holds another run's files unless --overwrite-output-dir (which deletes them, so `latest`
// can never pick an old checkpoint); a resume refuses a changed identity field unless
// --ignore-config-mismatch.
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/train/config.hpp"

namespace vkt::train {

// The identity of the run `config` describes (reads config.json, lists the safetensors, hashes
// the data file).
nlohmann::json run_identity(const TrainConfig& config);

// Makes `config.output_dir` ready for the run with `identity`, before the model loads: creates it
// (UserError with a hint when it is a file, read-only or cannot be created), then refuses another
// run's files, deletes them under --overwrite-output-dir, or checks a resume against run.json.
void prepare_output_dir(const TrainConfig& config, const nlohmann::json& identity);

}  // namespace vkt::train
