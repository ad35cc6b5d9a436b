#include "engine/text/bpe_stream.hpp"

namespace vkt::text {

namespace {

using nlohmann::json;

// nlohmann's own document builder for everything outside model.vocab and model.merges.
class StreamingHandler {
 public:
  StreamingHandler(json& document, StreamedBpeTables& tables) : dom_(document), tables_(tables) {}

  bool null() {
    return scalar([&] { return dom_.null(); });
  }
  bool boolean(bool value) {
    return scalar([&] { return dom_.boolean(value); });
  }
  bool number_integer(json::number_integer_t value) {
    return scalar([&] { return dom_.number_integer(value); });
  }
  bool number_unsigned(json::number_unsigned_t value) {
    if (mode_ == Mode::vocab) {
      if (value > 0xfffffffeull) throw NotStreamable("vocabulary id out of range");
      tables_.vocab.emplace_back(std::move(pending_key_), static_cast<uint32_t>(value));
      return true;
    }
    return scalar([&] { return dom_.number_unsigned(value); });
  }
  bool number_float(json::number_float_t value, const std::string& text) {
    return scalar([&] { return dom_.number_float(value, text); });
  }
  bool binary(json::binary_t& value) {
    return scalar([&] { return dom_.binary(value); });
  }
  bool string(std::string& value) {
    if (mode_ == Mode::merges) {  // legacy "a b"
      if (value.rfind("#version", 0) == 0) return true;
      size_t space = value.find(' ');
      if (space == std::string::npos || value.find(' ', space + 1) != std::string::npos) throw NotStreamable("merge");
      tables_.merges.emplace_back(value.substr(0, space), value.substr(space + 1));
      return true;
    }
    if (mode_ == Mode::merge_pair) {
      if (pair_.size() == 2) throw NotStreamable("merge");
      pair_.push_back(std::move(value));
      return true;
    }
    return scalar([&] { return dom_.string(value); });
  }
  bool start_object(std::size_t size) {
    if (mode_ != Mode::normal) throw NotStreamable("nested value");
    if (at("vocab")) {
      mode_ = Mode::vocab;
      return dom_.start_object(0) && dom_.end_object();
    }
    keys_.emplace_back();
    return dom_.start_object(size);
  }
  bool key(std::string& value) {
    if (mode_ == Mode::vocab) {
      pending_key_ = std::move(value);
      return true;
    }
    keys_.back() = value;
    return dom_.key(value);
  }
  bool end_object() {
    if (mode_ == Mode::vocab) {
      mode_ = Mode::normal;
      return true;
    }
    keys_.pop_back();
    return dom_.end_object();
  }
  bool start_array(std::size_t size) {
    if (mode_ == Mode::merges) {
      mode_ = Mode::merge_pair;
      pair_.clear();
      return true;
    }
    if (mode_ != Mode::normal) throw NotStreamable("nested value");
    if (at("merges")) {
      mode_ = Mode::merges;
      return dom_.start_array(0) && dom_.end_array();
    }
    keys_.emplace_back("[]");  // arrays have no keys: model.vocab is never inside one
    return dom_.start_array(size);
  }
  bool end_array() {
    if (mode_ == Mode::merge_pair) {
      if (pair_.size() != 2) throw NotStreamable("merge");
      tables_.merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      mode_ = Mode::merges;
      return true;
    }
    if (mode_ == Mode::merges) {
      mode_ = Mode::normal;
      return true;
    }
    keys_.pop_back();
    return dom_.end_array();
  }
  template <class Exception>
  bool parse_error(std::size_t position, const std::string& token, const Exception& error) {
    return dom_.parse_error(position, token, error);
  }

 private:
  enum class Mode { normal, vocab, merges, merge_pair };
  // Whether the value starting now is model.<name> of the top-level object.
  bool at(const char* name) const { return keys_.size() == 2 && keys_[0] == "model" && keys_[1] == name; }
  template <class Forward>
  bool scalar(Forward&& forward) {
    if (mode_ != Mode::normal) throw NotStreamable("unexpected value");
    return forward();
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  StreamedBpeTables& tables_;
  std::vector<std::string> keys_;  // the current key of each open object ("[]" for an array)
  Mode mode_ = Mode::normal;
  std::string pending_key_;
  std::vector<std::string> pair_;
};

}  // namespace

json parse_streaming_bpe(const std::string& text, StreamedBpeTables& tables) {
  json document;
  StreamingHandler handler(document, tables);
  json::sax_parse(text, &handler);
  return document;
}

}  // namespace vkt::text
