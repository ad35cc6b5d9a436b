#include "engine/text/post_processor.hpp"

#include <algorithm>
#include <cctype>

namespace vkt::text {

PostProcessor parse_post_processor(const JsonNode& node) {
  std::string type = node.type();
  if (type == "Sequence") {
    auto steps = parse_each<PostProcessor>(node.at("processors"), parse_post_processor);
    return [steps](std::vector<uint32_t> ids) {
      for (const auto& step : steps) ids = step(std::move(ids));
      return ids;
    };
  }
  if (type == "ByteLevel") return [](std::vector<uint32_t> ids) { return ids; };  // only trims offsets
  if (type == "TemplateProcessing") {
    // "single": [{"SpecialToken": {"id": "<s>", ...}}, {"Sequence": {"id": "A", ...}}] (or the
    // string forms "<s>" / "$A"); "special_tokens": {"<s>": {"ids": [1], ...}}.
    JsonNode single = node.at("single");
    JsonNode specials = node.at("special_tokens");
    struct Item {
      bool is_sequence;
      std::vector<uint32_t> ids;
    };
    std::vector<Item> items;
    for (size_t i = 0; i < single.size(); i++) {
      JsonNode piece = single[i];
      std::string name;
      bool is_sequence = false;
      if (piece.has("Sequence")) {
        is_sequence = true;
        name = piece.at("Sequence").at("id").string();
      } else if (piece.has("SpecialToken")) {
        name = piece.at("SpecialToken").at("id").string();
      } else if (piece.value().is_string()) {  // "$A", "$A:1", "<s>", "<s>:0"
        name = piece.string();
        size_t colon = name.rfind(':');
        if (colon != std::string::npos && colon > 0 && colon + 1 < name.size() &&
            std::all_of(name.begin() + static_cast<long>(colon) + 1, name.end(),
                        [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
          name.resize(colon);
        if (!name.empty() && name[0] == '$') {
          is_sequence = true;
          name = name.substr(1);
        }
      } else {
        piece.fail("must be {\"SpecialToken\": ...} or {\"Sequence\": ...}");
      }
      if (is_sequence) {
        if (name != "A" && name != "a" && name != "" && name != "0")
          piece.fail("the single-sequence template may only use sequence A, got \"" + name + "\"");
        items.push_back({true, {}});
        continue;
      }
      if (!specials.has(name.c_str()))
        piece.fail("special token \"" + name + "\" is not defined in " + specials.path());
      JsonNode special = specials.at(name.c_str());
      JsonNode ids = special.at("ids");
      Item item{false, {}};
      for (size_t j = 0; j < ids.size(); j++) item.ids.push_back(ids[j].id());
      items.push_back(std::move(item));
    }
    return [items](std::vector<uint32_t> ids) {
      std::vector<uint32_t> out;
      out.reserve(ids.size() + items.size());
      for (const auto& item : items) {
        if (item.is_sequence)
          out.insert(out.end(), ids.begin(), ids.end());
        else
          out.insert(out.end(), item.ids.begin(), item.ids.end());
      }
      return out;
    };
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    // {"cls": ["<s>", 0], "sep": ["</s>", 2]}: cls, text, sep.
    JsonNode cls_node = node.at("cls"), sep_node = node.at("sep");
    if (cls_node.size() != 2 || sep_node.size() != 2) node.fail("\"cls\" and \"sep\" must be [token, id] pairs");
    uint32_t cls = cls_node[1].id(), sep = sep_node[1].id();
    return [cls, sep](std::vector<uint32_t> ids) {
      ids.insert(ids.begin(), cls);
      ids.push_back(sep);
      return ids;
    };
  }
  node.fail("post-processor type \"" + type + "\" is not supported",
            "supported post-processors: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence");
}

}  // namespace vkt::text
