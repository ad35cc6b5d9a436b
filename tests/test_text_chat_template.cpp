// Chat templates: the Jinja interpreter construct by construct (expected outputs worked out by
// hand from jinja2's rules), the real templates of tests/data/chat_templates/ against transformers'
// own renderings (golden.json, from tests/reference/chat_template_golden.py), and the
// prompt/completion segments used for completion-only training.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/text/chat_template.hpp"
#include "engine/text/jinja_eval.hpp"
#include "engine/text/jinja_parser.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"

using namespace vkt;
using namespace vkt::text;
using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

namespace {

fs::path templates_dir() { return test::source_dir() / "tests/data/chat_templates"; }

std::string render(const std::string& source, const Json& variables = Json::object()) {
  return jinja::render(*jinja::parse_template(source, "test.jinja"), variables);
}

ChatFormat family_format(const std::string& family) {
  Json special = Json::parse(read_text_file(templates_dir() / "special_tokens.json"));
  return parse_chat_format(read_text_file(templates_dir() / (family + ".jinja")), family + ".jinja", special[family]);
}

}  // namespace

TEST_SUITE("model_io") {

TEST_CASE("jinja: output, literals and Python's str()") {
  CHECK(render("a{{ 'b' }}c{{ \"d\\ne\" }}") == "abcd\ne");
  CHECK(render("{{ x }}|{{ y }}", {{"x", 3}}) == "3|");  // undefined prints nothing
  CHECK(render("{{ none }} {{ true }} {{ False }} {{ 1.5 }} {{ 2.0 }} {{ 7 // 2 }} {{ 7 / 2 }} {{ -7 % 3 }}") ==
        "None True False 1.5 2.0 3 3.5 2");
  CHECK(render("{{ [1, 'a', none, {'k': \"it's\"}] }}") == "[1, 'a', None, {'k': \"it's\"}]");
  CHECK(render("{{ 'x' ~ 1 ~ none }} {{ 'a' + 'b' }} {{ 'ab' * 2 }} {{ 2 ** 3 }}") == "x1None ab abab 8");
  CHECK(render("{# a comment #}ok") == "ok");
}

TEST_CASE("jinja: whitespace control as transformers sets it (trim_blocks, lstrip_blocks)") {
  // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before it.
  CHECK(render("{% if true %}\n  yes\n{% endif %}\nend") == "  yes\nend");
  CHECK(render("  {% if true %}x{% endif %}") == "x");
  CHECK(render("a  {% if true %}x{% endif %}") == "a  x");  // not at the start of a line: kept
  CHECK(render("a\n  {{ 'x' }}\n") == "a\n  x");            // {{ }} is not a block; one final newline goes
  CHECK(render("a  {%- if true -%}  x  {%- endif %}  b") == "ax  b");
  CHECK(render("{{- ' a ' -}}  \n  {{ 'b' }}") == " a b");
  CHECK(render("{% if true +%}\nx{%+ endif %}") == "\nx");  // + disables both
  CHECK(render("{# c #}\nx") == "x");
}

TEST_CASE("jinja: whitespace control on 300 random templates, as transformers' jinja2 renders them") {
  Json golden = Json::parse(read_text_file(templates_dir() / "golden.json"));
  REQUIRE(golden["whitespace"].size() == 300);
  for (const Json& entry : golden["whitespace"]) {
    INFO(entry[0].dump());
    CHECK(render(entry[0].get<std::string>()) == entry[1].get<std::string>());
  }
}

TEST_CASE("jinja: if/elif/else, boolean and comparison operators, in, tests") {
  std::string t =
      "{% for n in [1, 2, 3, 4] %}{% if n == 1 %}one{% elif n is even and not n > 2 %}two"
      "{% else %}{{ n }}{% endif %},{% endfor %}";
  CHECK(render(t) == "one,two,3,4,");
  CHECK(render("{{ 'b' in 'abc' }} {{ 2 not in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 1 < 2 <= 2 }}") ==
        "True False True True");
  CHECK(render("{{ x is defined }} {{ y is defined }} {{ y is undefined }} {{ z is none }} {{ x is string }} "
               "{{ m is mapping }} {{ x is not number }} {{ 9 is divisibleby 3 }} {{ l is iterable }} {{ b is false }}",
               {{"x", "s"}, {"z", nullptr}, {"m", Json::object()}, {"l", Json::array()}, {"b", false}}) ==
        "True False True True True True True True True True");
  CHECK(render("{{ a or 'default' }} {{ 'x' if a else 'y' }} {{ 0 and 1 }}", {{"a", ""}}) == "default y 0");
}

TEST_CASE("jinja: for loops, loop variables, reversed slices, else, break, continue and scopes") {
  CHECK(render("{% for x in xs %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }} {% "
               "endfor %}",
               {{"xs", {"a", "b"}}}) == "01TrueFalse2 12FalseTrue2 ");
  CHECK(render("{% for x in xs[::-1] %}{{ x }}{% endfor %}|{{ xs[1:] }}|{{ xs[-1] }}|{{ 'héllo'[1:3] }}",
               {{"xs", {1, 2, 3}}}) == "321|[2, 3]|3|él");
  CHECK(render("{% for x in [] %}x{% else %}empty{% endfor %}") == "empty");
  CHECK(render("{% for x in [1, 2, 3, 4] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif "
               "%}{{ x }}{% endfor %}") == "13");
  CHECK(render("{% for x in [1, 2, 3] if x != 2 %}{{ loop.index }}{{ x }}{% endfor %}") == "1123");
  CHECK(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}") == "a=1;b=2;");
  // A set inside a loop lives for one iteration; namespace() carries values out of it.
  CHECK(render("{% set y = 1 %}{% for x in [1, 2] %}{{ y }}{% set y = y + 1 %}{% endfor %}|{{ y }}") == "11|1");
  CHECK(render("{% set ns = namespace(count=0) %}{% for x in [1, 2] %}{% set ns.count = ns.count + x %}{% endfor %}{{ "
               "ns.count }}") == "3");
  CHECK(render("{% set a %}block {{ 1 }}{% endset %}{{ a }}") == "block 1");
}

TEST_CASE("jinja: filters") {
  Json vars = {{"msgs", {{{"role", "user"}, {"content", "a"}}, {{"role", "assistant"}, {"content", "b"}}}}};
  CHECK(render("{{ '  x \\n' | trim }}|{{ 'aXb' | upper }}|{{ 'AxB' | lower }}|{{ [1, 2] | length }}|{{ 'héllo' | "
               "length }}") == "x|AXB|axb|2|5");
  CHECK(render("{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}", vars) ==
        "a");
  CHECK(render("{{ msgs | rejectattr('role', 'eq', 'user') | list | length }} {{ msgs | first }} {{ (msgs | "
               "last).content }}",
               vars) == "1 {'role': 'user', 'content': 'a'} b");
  CHECK(render("{{ x | default('d') }} {{ '' | default('d', true) }} {{ none | default('d') }}") == "d d None");
  CHECK(render("{{ {'b': 1, 'a': [1, 2.5, 'ü\"']} | tojson }}") == "{\"b\": 1, \"a\": [1, 2.5, \"ü\\\"\"]}");
  CHECK(render("{{ {'a': [1]} | tojson(indent=2) }}") == "{\n  \"a\": [\n    1\n  ]\n}");
  CHECK(render("{% for k, v in {'x': 1} | items %}{{ k }}{{ v }}{% endfor %} {{ [3, 1, 2] | sort | join }} {{ 'ab' | "
               "reverse }}") == "x1 123 ba");
  CHECK(render("{{ 'a\\nb' | indent(2) }}|{{ '3' | int + 1 }}|{{ -2 | abs }}|{{ 'x' | replace('x', 'y') }}") ==
        "a\n  b|4|2|y");
}

TEST_CASE("jinja: string and dict methods") {
  CHECK(render("{{ ' a b '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '\\n\\na'.lstrip('\\n') }}|{{ 'a\\n'.rstrip() }}") ==
        "a b|a|a|a");
  CHECK(
      render("{{ 'a</think>b</think>c'.split('</think>')[-1] }}|{{ ' a  b '.split() }}|{{ 'a,b,c'.split(',', 1) }}") ==
      "c|['a', 'b']|['a', 'b,c']");
  CHECK(render("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'aaa'.replace('a', 'b', 2) }} {{ "
               "'ab'.upper() }}") == "True True bba AB");
  CHECK(render("{{ d.get('a') }} {{ d.get('z', 'no') }} {{ d.keys() | list }} {{ d['a'] }} {{ d.a }}",
               {{"d", {{"a", 1}}}}) == "1 no ['a'] 1 1");
}

TEST_CASE("jinja: macros and globals") {
  CHECK(render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', "
               "punct='?') }}") == "Hi A! Hi B?");
  CHECK(render("{% for i in range(3) %}{{ i }}{% endfor %}{{ range(1, 7, 2) | list }}") == "012[1, 3, 5]");
  CHECK(render("{{ dict(a=1) }}") == "{'a': 1}");
  CHECK(render("{{ strftime_now('%Y') | length }}") == "4");
}

TEST_CASE("jinja: errors name the template, line:column and the construct") {
  auto error = [](const std::string& source, const Json& vars = Json::object()) {
    return test::user_error_of([&] { render(source, vars); });
  };
  CHECK(error("ab\n  {% include 'x' %}").find("test.jinja:2:6: the tag {% include %} is not supported") !=
        std::string::npos);
  CHECK(error("{{ x | wordwrap }}").find("test.jinja:1:8: the filter 'wordwrap' is not supported") !=
        std::string::npos);
  CHECK(error("{{ x is sameas }}").find("test.jinja:1:9") != std::string::npos);
  CHECK(error("{% if x %}").find("ends inside a block") != std::string::npos);
  CHECK(error("{{ 'abc }}").find("test.jinja:1:4: the string literal is never closed") != std::string::npos);
  CHECK(error("{{ x.y.z }}", {{"x", Json::object()}}).find("test.jinja:1:7: cannot read .z") != std::string::npos);
  CHECK(error("{{ 'a' + 1 }}").find("unsupported operand types for +: 'str' and 'int'") != std::string::npos);
  std::string raised = error("\n{{ raise_exception('Roles must alternate') }}");
  CHECK(raised.find("test.jinja:2:4: the chat template rejects this conversation: Roles must alternate") !=
        std::string::npos);
}

TEST_CASE("chat templates: real templates render byte-identically to transformers (golden.json)") {
  Json golden = Json::parse(read_text_file(templates_dir() / "golden.json"));
  std::map<std::string, ChatFormat> formats;
  int rendered = 0, raised = 0;
  for (const Json& c : golden["cases"]) {
    std::string family = c["family"];
    if (!formats.count(family)) formats.emplace(family, family_format(family));
    INFO(family << " / " << c["name"].get<std::string>());
    if (c.contains("error")) {
      std::string message = test::user_error_of(
          [&] { render_chat_text(formats.at(family), c["messages"], c["add_generation_prompt"], c["extra"]); });
      CHECK(message.find(family + ".jinja") != std::string::npos);
      CHECK(message.find("Conversation roles must alternate") != std::string::npos);
      raised++;
    } else {
      CHECK(render_chat_text(formats.at(family), c["messages"], c["add_generation_prompt"], c["extra"]) ==
            c["expected"].get<std::string>());
      rendered++;
    }
  }
  CHECK(formats.size() == 7);
  CHECK(rendered == 146);  // 7 templates x 22 conversations; Llama 2 and Gemma 3 reject 4 each
  CHECK(raised == 8);
}

TEST_CASE("chat templates: assistant turns are the completion segments, on every real template") {
  struct Family {
    const char* name;
    const char* end_of_turn;
  };
  const Family families[] = {{"chatml", "<|im_end|>"},
                             {"llama2", " </s>"},
                             {"llama3", "<|eot_id|>"},
                             {"llama3_1", "<|eot_id|>"},
                             {"qwen3", "<|im_end|>"},
                             {"gemma3", "<end_of_turn>"},
                             {"deepseek_v3", "<｜end▁of▁sentence｜>"}};
  Json conversation = {{{"role", "system"}, {"content", "Be brief."}},
                       {{"role", "user"}, {"content", "What is 2+2?"}},
                       {{"role", "assistant"}, {"content", " 4, of course "}},
                       {{"role", "user"}, {"content", "And 3+3?"}},
                       {{"role", "assistant"}, {"content", "6"}}};
  for (const Family& family : families) {
    INFO(family.name);
    ChatFormat format = family_format(family.name);
    std::vector<TextSegment> segments = render_chat_segments(format, conversation);
    std::string joined;
    std::vector<std::string> completions;
    for (const TextSegment& segment : segments) {
      joined += segment.text;
      if (segment.completion) completions.push_back(segment.text);
    }
    // The segments are the transformers rendering, up to the end of the last assistant turn.
    std::string full = render_chat_text(format, conversation, false);
    CHECK(full.rfind(joined, 0) == 0);
    CHECK(full.substr(joined.size()).find("6") == std::string::npos);
    REQUIRE(completions.size() == 2);
    // Each completion is the (possibly trimmed) content and the end-of-turn marker, nothing of the next turn.
    bool trims = std::string(family.name) != "chatml" && std::string(family.name) != "qwen3" &&
                 std::string(family.name) != "deepseek_v3";
    CHECK(completions[0] == (trims ? std::string("4, of course") : std::string(" 4, of course ")) + family.end_of_turn);
    CHECK(completions[1] == std::string("6") + family.end_of_turn);
    for (const TextSegment& segment : segments)
      if (!segment.completion) CHECK(segment.text.find("of course") == std::string::npos);
  }
}

TEST_CASE("chat templates: without a loop over the messages, the completion is the assistant content") {
  ChatFormat format = parse_chat_format(
      "{{ '<u>' + messages[0].content + '</u><a>' + messages[1].content | trim + '</a>' }}", "no_loop.jinja");
  Json conversation = {{{"role", "user"}, {"content", "hi"}}, {{"role", "assistant"}, {"content", " yo "}}};
  std::vector<TextSegment> segments = render_chat_segments(format, conversation);
  REQUIRE(segments.size() == 2);
  CHECK(segments[0].text == "<u>hi</u><a>");
  CHECK(segments[1].text == "yo");
  CHECK(segments[1].completion);
}

TEST_CASE("chat templates: {% generation %} blocks mark the completion when a template has them") {
  ChatFormat format = parse_chat_format(
      "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' }}{% if m.role == 'assistant' %}{% generation %}"
      "{{ m.content + '<|im_end|>' }}{% endgeneration %}{% else %}{{ m.content + '<|im_end|>' }}{% endif %}{{ '\\n' }}"
      "{% endfor %}",
      "generation.jinja");
  Json conversation = {{{"role", "user"}, {"content", "hi"}}, {{"role", "assistant"}, {"content", "yo"}}};
  CHECK(render_chat_text(format, conversation, false) ==
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n");
  std::vector<TextSegment> segments = render_chat_segments(format, conversation);
  REQUIRE(segments.size() == 2);
  CHECK(segments[0].text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  CHECK_FALSE(segments[0].completion);
  CHECK(segments[1].text == "yo<|im_end|>");
  CHECK(segments[1].completion);
}

TEST_CASE("chat templates: a model folder's template (chat_template.jinja, tokenizer_config.json, built-in ChatML)") {
  fs::path dir = test::temp_dir("chat_template_folder");
  fs::remove(dir / "chat_template.jinja");
  test::write_bytes(dir / "tokenizer_config.json",
                    "{\"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<s>\"}, \"chat_template\": \"{{ "
                    "bos_token }}{{ messages[0].content }}\"}");
  Json messages = {{{"role", "user"}, {"content", "hi"}}};
  CHECK(apply_chat_template(dir, messages, false) == "<s>hi");
  test::write_bytes(dir / "chat_template.jinja", "[{{ messages | length }}]\n");
  CHECK(apply_chat_template(dir, messages, false) == "[1]");
  fs::remove(dir / "chat_template.jinja");
  test::write_bytes(dir / "tokenizer_config.json", "{}");
  CHECK(apply_chat_template(dir, messages, true) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  test::write_bytes(dir / "tokenizer_config.json", "{\"chat_template\": \"{% for %}\"}");
  std::string error = test::user_error_of([&] { load_chat_format(dir); });
  CHECK(error.find("tokenizer_config.json chat_template:1:8") != std::string::npos);
}

}  // TEST_SUITE
