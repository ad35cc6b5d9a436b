// tokenizer.json encode/decode against ids worked out by hand from the HF algorithm (and against
// an independent Python implementation); errors for malformed files.
#include <doctest/doctest.h>

#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/text/regex.hpp"
#include "engine/text/tokenizer.hpp"
#include "engine/text/trainer.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"

using namespace vkt;
using namespace vkt::text;
using namespace vkt::test;  // user_error_of, write_bytes, load_json
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path tokenizer_fixture(const std::string& name) { return test::source_dir() / "tests/data/tokenizers" / name; }

std::vector<uint32_t> ids(std::initializer_list<uint32_t> list) { return list; }

}  // namespace

TEST_SUITE("model_io") {

// Byte-level fixture (tests/reference/make_tokenizer_fixtures.py): the 256 byte tokens have
// id == byte value ("Ġ" = space = 32, "Ċ" = newline = 10, "Ã" = 0xC3 = 195, "©" = 0xA9 = 169);
// merges by rank: 0 h+e=256, 1 l+l=257, 2 ll+o=258, 3 he+llo=259 ("hello"), 4 Ġ+w=260, 5 o+r=261,
// 6 Ġw+or=262, 7 l+d=263, 8 Ġwor+ld=264 ("Ġworld"), 9 e+l=265, 10 3+4=266, 11 Ã+©=267 ("é"),
// 12 Ċ+Ċ=268, 13 '+S=269; "Ġxyz"=270 is in the vocabulary but no merge makes it.
// Llama 3 style: Split(Llama 3 regex, Isolated) then ByteLevel without regex; ignore_merges;
// added tokens <|begin_of_text|>=271, <|end_of_text|>=272, <|eot_id|>=273 (special),
// <mask>=274 (lstrip), <r>=275 (rstrip), "hi"=276 (single_word); template: <|begin_of_text|> $A.
TEST_CASE("tokenizer: byte-level BPE (Llama 3 style) by hand") {
  Tokenizer tokenizer = Tokenizer::load(tokenizer_fixture("bytelevel_llama3.json"));
  // "hello world": the regex gives "hello" and " world" -> "hello", "Ġworld".
  //  "hello" = h e l l o. Candidate pairs: h+e (rank 0), e+l (9), l+l (1). Rank 0: he; rank 1: ll;
  //  then ll+o (2) -> llo; then he+llo (3) -> hello = 259. (e+l at rank 9 is stale by then.)
  //  "Ġworld" = Ġ w o r l d: Ġ+w (4), o+r (5), then Ġw+or (6), l+d (7), Ġwor+ld (8) -> 264.
  CHECK(tokenizer.encode("hello world", false) == ids({259, 264}));
  CHECK(tokenizer.encode("hello world") == ids({271, 259, 264}));  // BOS from the template
  CHECK(tokenizer.adds_bos());
  CHECK(tokenizer.bos_id() == 271u);
  CHECK(tokenizer.eos_id() == 272u);  // <|end_of_text|>
  // Merge priority, not left-to-right: "ell" has e+l (rank 9) and l+l (rank 1): l+l wins, and
  // e+ll is no merge -> e(101), ll(257). A greedy left-to-right merge would give el, l.
  CHECK(tokenizer.encode("ell", false) == ids({101, 257}));
  // "hel": h+e (0) before e+l (9) -> he(256), l(108).
  CHECK(tokenizer.encode("hel", false) == ids({256, 108}));
  // ignore_merges: the pre-token "Ġxyz" is in the vocabulary -> 270 directly, although no merge leads there.
  CHECK(tokenizer.encode(" xyz", false) == ids({270}));
  // Llama 3's regex takes at most 3 digits: "12345" -> "123", "45"; the 3+4 merge cannot apply across them.
  CHECK(tokenizer.encode("12345", false) == ids({49, 50, 51, 52, 53}));
  // Unicode: "café" is one \p{L}+ piece; é = C3 A9 -> Ã © -> merge 11 -> 267.
  CHECK(tokenizer.encode("café", false) == ids({99, 97, 102, 267}));
  // CJK: 你 = E4 BD A0, 好 = E5 A5 BD, no merges -> the six byte ids.
  CHECK(tokenizer.encode("你好", false) == ids({228, 189, 160, 229, 165, 189}));
  // Emoji 👍 = F0 9F 91 8D (a symbol: the " ?[^\s\p{L}\p{N}]+" alternative).
  CHECK(tokenizer.encode("👍", false) == ids({240, 159, 145, 141}));
  // Case-insensitive contractions: "IT'S" -> "IT", "'S" -> I T 'S(269).
  CHECK(tokenizer.encode("IT'S", false) == ids({73, 84, 269}));
  // Whitespace runs: "a  b" -> "a", " " (\s+(?!\S) backs off one space), " b" -> 97, 32, 32 98.
  CHECK(tokenizer.encode("a  b", false) == ids({97, 32, 32, 98}));
  // Trailing spaces are one piece; "\n\n" is one piece (\s*[\r\n]+) -> Ċ+Ċ = 268.
  CHECK(tokenizer.encode("a   ", false) == ids({97, 32, 32, 32}));
  CHECK(tokenizer.encode("a\n\nb", false) == ids({97, 268, 98}));
  // Special tokens in the text are matched before the model: <|begin_of_text|>, "ab" (a b, no merge), <|eot_id|>.
  CHECK(tokenizer.encode("<|begin_of_text|>ab<|eot_id|>", false) == ids({271, 97, 98, 273}));
  CHECK(tokenizer.encode("<|begin_of_text|>ab<|eot_id|>", true) == ids({271, 271, 97, 98, 273}));
  // Text around a special token is pre-tokenized on its own: "a " -> a, " "; " b" -> Ġ b.
  CHECK(tokenizer.encode("a <|eot_id|> b", false) == ids({97, 32, 273, 32, 98}));
  // lstrip: <mask> swallows the space before it: "a", "<mask>", " b".
  CHECK(tokenizer.encode("a <mask> b", false) == ids({97, 274, 32, 98}));
  // rstrip: <r> swallows the spaces after it: "x", "<r>  ", "y".
  CHECK(tokenizer.encode("x<r>  y", false) == ids({120, 275, 121}));
  // single_word: "hi" is the added token only between non-word characters. In "this" it is
  // inside a word, so "this" is t h i s; " there" = Ġ t (h+e) r e.
  CHECK(tokenizer.encode("hi there", false) == ids({276, 32, 116, 256, 114, 101}));
  CHECK(tokenizer.encode("this", false) == ids({116, 104, 105, 115}));
  CHECK(tokenizer.encode("", true) == ids({271}));
  CHECK(tokenizer.encode("", false).empty());
  CHECK(tokenizer.vocab_size() == 277);
  CHECK(tokenizer.token_to_id("Ġworld") == 264u);
  CHECK(tokenizer.token_to_id("<|eot_id|>") == 273u);
  CHECK(tokenizer.id_to_token(259) == "hello");
  CHECK(tokenizer.id_to_token(273) == "<|eot_id|>");
  CHECK(!tokenizer.id_to_token(5000));
  CHECK(tokenizer.is_special(273));
  CHECK(!tokenizer.is_special(274));

  // Decoding reverses the byte-level map and joins; special tokens can be skipped.
  CHECK(tokenizer.decode(ids({271, 259, 264})) == "<|begin_of_text|>hello world");
  CHECK(tokenizer.decode(ids({271, 259, 264}), true) == "hello world");
  CHECK(tokenizer.decode(ids({228, 189})) == "\xef\xbf\xbd");  // half of 你: one U+FFFD, as from_utf8_lossy
  CHECK(tokenizer.decode(ids({99, 5000, 97})) == "ca");        // unknown ids are skipped, as HF does
  for (const char* text : {"hello world", "café 你好 👍!", "a  b\n\n\tc   ", "IT'S 12345 <|eot_id|> x<r>y",
                           "naïve e\u0301 Привет", "hi this"}) {
    CAPTURE(text);
    CHECK(tokenizer.decode(tokenizer.encode(text, false)) == text);
  }
  // The whitespace an lstrip/rstrip token swallowed does not come back (the same in HF).
  CHECK(tokenizer.decode(tokenizer.encode("x<r>  y a <mask>", false)) == "x<r>y a<mask>");
}

TEST_CASE("tokenizer: byte-level variants: GPT-2 regex, prefix space, merges as strings, ignore_merges off") {
  // GPT-2 style fixture: same vocabulary and merges (as "a b" strings), ByteLevel pre-tokenizer
  // with its own regex, add_prefix_space false, <|endoftext|>=271, no template.
  Tokenizer gpt2 = Tokenizer::load(tokenizer_fixture("bytelevel_gpt2.json"));
  CHECK(gpt2.encode("hello world") == ids({259, 264}));
  CHECK(!gpt2.adds_bos());
  CHECK(!gpt2.bos_id());
  CHECK(gpt2.eos_id() == 271u);
  // GPT-2's regex keeps digit runs whole: "12345" -> 1 2 (3+4) 5.
  CHECK(gpt2.encode("12345") == ids({49, 50, 266, 53}));
  // Its contractions are case-sensitive: "IT'S" -> "IT", "'", "S" -> no '+S merge.
  CHECK(gpt2.encode("IT'S") == ids({73, 84, 39, 83}));
  // "\n\n" before a letter: \s+(?!\S) takes one newline, then \s+ the other: two pieces, no Ċ+Ċ.
  CHECK(gpt2.encode("a\n\nb") == ids({97, 10, 10, 98}));
  // Without ignore_merges, "Ġxyz" is spelled out.
  CHECK(gpt2.encode(" xyz") == ids({32, 120, 121, 122}));

  json document = load_json(tokenizer_fixture("bytelevel_gpt2.json"));
  document["pre_tokenizer"]["add_prefix_space"] = true;  // "hello" -> " hello" -> Ġ hello
  Tokenizer prefixed = Tokenizer::from_json(document, "prefixed.json");
  CHECK(prefixed.encode("hello world") == ids({32, 259, 264}));
  CHECK(prefixed.encode(" world") == ids({264}));  // already starts with a space

  json llama3 = load_json(tokenizer_fixture("bytelevel_llama3.json"));
  llama3["model"]["ignore_merges"] = false;
  CHECK(Tokenizer::from_json(llama3, "no_ignore.json").encode(" xyz", false) == ids({32, 120, 121, 122}));

  // Normalizers with a normalized added token: NFKC turns fullwidth "ＨＥＬＬＯ" into "HELLO",
  // Lowercase into "hello"; the added token "HELLO" (normalized: true) is stored normalized as
  // "hello" and matched in the normalized text -> its id 272, not the merges' 259.
  json normalized = load_json(tokenizer_fixture("bytelevel_gpt2.json"));
  normalized["normalizer"] = {{"type", "Sequence"},
                              {"normalizers", json::array({{{"type", "NFKC"}}, {{"type", "Lowercase"}}})}};
  normalized["added_tokens"].push_back({{"id", 272},
                                        {"content", "HELLO"},
                                        {"single_word", false},
                                        {"lstrip", false},
                                        {"rstrip", false},
                                        {"normalized", true},
                                        {"special", false}});
  Tokenizer lowered = Tokenizer::from_json(normalized, "normalized.json");
  CHECK(lowered.encode("\xef\xbc\xa8\xef\xbc\xa5\xef\xbc\xac\xef\xbc\xac\xef\xbc\xaf") == ids({272}));
  CHECK(lowered.encode("Hello World") == ids({272, 264}));  // "hello world" after Lowercase
  CHECK(lowered.decode(ids({272})) == "hello");             // decoded as its normalized form, as HF does
}

TEST_CASE("tokenizer: Qwen2 style: NFC normalizer, one digit per piece, no BOS") {
  // Same byte-level vocabulary and merges; normalizer NFC; Split with Qwen2's regex (\p{N} alone);
  // added <|endoftext|>=271, <|im_start|>=272, <|im_end|>=273; ByteLevel post-processor.
  Tokenizer tokenizer = Tokenizer::load(tokenizer_fixture("bytelevel_qwen2.json"));
  // "e" + U+0301 (combining acute) is composed by NFC into é = C3 A9 -> Ã© = 267.
  CHECK(tokenizer.encode("e\u0301") == ids({267}));
  CHECK(tokenizer.decode(tokenizer.encode("e\u0301")) == "é");  // the normalized text comes back
  // One digit per piece: "12345" -> 1 2 3 4 5; the 3+4 merge never applies.
  CHECK(tokenizer.encode("12345") == ids({49, 50, 51, 52, 53}));
  CHECK(tokenizer.encode("<|im_start|>hello<|im_end|>") == ids({272, 259, 273}));
  CHECK(!tokenizer.adds_bos());
  CHECK(!tokenizer.bos_id());
  CHECK(tokenizer.eos_id() == 271u);  // <|endoftext|> (Qwen2's tokenizer_config names <|im_end|> for chat models)
}

// Sentencepiece fixtures: <unk>=0 <s>=1 </s>=2, <0x00>..<0xFF> = 3..258 (byte b -> 3 + b),
// pieces ▁=259 a=260 b=261 c=262 h=263 e=264 l=265 o=266 w=267 r=268 d=269 é=270 t=271;
// merges by rank: 0 ▁+h=272, 1 l+l=273, 2 ▁h+e=274, 3 ll+o=275, 4 ▁he+llo=276, 5 ▁+w=277,
// 6 o+r=278, 7 ▁w+or=279, 8 l+d=280, 9 ▁wor+ld=281, 10 ▁+▁=282, 11 e+l=283.
// byte_fallback, unk <unk>, fuse_unk; template <s> $A.
TEST_CASE("tokenizer: sentencepiece-style BPE (Llama 2 style) by hand") {
  // Normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer: the whole text is one word.
  Tokenizer tokenizer = Tokenizer::load(tokenizer_fixture("sentencepiece_llama2.json"));
  // "hello world" -> "▁hello▁world": ▁+h (0) -> ▁h; l+l (1); ▁h+e (2); ll+o (3); ▁he+llo (4) -> 276;
  // ▁+w (5), o+r (6), ▁w+or (7), l+d (8), ▁wor+ld (9) -> 281.
  CHECK(tokenizer.encode("hello world", false) == ids({276, 281}));
  CHECK(tokenizer.encode("hello world") == ids({1, 276, 281}));
  CHECK(tokenizer.adds_bos());
  CHECK(tokenizer.bos_id() == 1u);
  CHECK(tokenizer.eos_id() == 2u);
  // Byte fallback: "hi" -> ▁ h i; i is not a piece -> <0x69> = 3 + 0x69 = 108; ▁+h -> 272.
  CHECK(tokenizer.encode("hi", false) == ids({272, 108}));
  CHECK(tokenizer.encode("é", false) == ids({259, 270}));  // é is a piece
  // 你 = E4 BD A0 -> <0xE4>=231 <0xBD>=192 <0xA0>=163.
  CHECK(tokenizer.encode("你", false) == ids({259, 231, 192, 163}));
  // 👍 = F0 9F 91 8D -> 243 162 148 144.
  CHECK(tokenizer.encode("👍", false) == ids({259, 243, 162, 148, 144}));
  // Whitespace runs: "a  b" -> ▁a▁▁b: ▁+▁ (10) -> 282. "a   b" -> ▁a▁▁▁b: two ▁+▁ candidates of
  // equal rank overlap; the leftmost wins -> ▁▁, ▁.
  CHECK(tokenizer.encode("a  b", false) == ids({259, 260, 282, 261}));
  CHECK(tokenizer.encode("a   b", false) == ids({259, 260, 282, 259, 261}));
  // Priority again: "ell" -> ▁ e l l: l+l (1) beats e+l (11).
  CHECK(tokenizer.encode("ell", false) == ids({259, 264, 273}));
  // Special tokens are cut out first and the normalizer runs on each remaining piece, so "hello"
  // between them still gets its ▁ (HF's legacy Llama behaviour).
  CHECK(tokenizer.encode("<s>hello</s>", false) == ids({1, 276, 2}));

  // Decoder Replace(▁ -> " "), ByteFallback, Fuse, Strip(1 leading space).
  CHECK(tokenizer.decode(ids({1, 276, 281}), true) == "hello world");
  CHECK(tokenizer.decode(ids({1, 276, 281})) == "<s> hello world");  // as HF: <s> keeps the space after it
  CHECK(tokenizer.decode(ids({259, 231, 192, 163})) == "你");
  CHECK(tokenizer.decode(ids({259, 231})) == "\xef\xbf\xbd");  // a lone lead byte: U+FFFD per byte
  for (const char* text : {"hello world", "hi é 你好 👍", "a   b", "Привет, мир!", "tab\there"}) {
    CAPTURE(text);
    CHECK(tokenizer.decode(tokenizer.encode(text, false)) == std::string(text));
    CHECK(tokenizer.decode(tokenizer.encode(text), true) == std::string(text));  // BOS skipped
  }

  // Without byte fallback, unknown characters become <unk>; fuse_unk fuses a run into one.
  json document = load_json(tokenizer_fixture("sentencepiece_llama2.json"));
  document["model"]["byte_fallback"] = false;
  CHECK(Tokenizer::from_json(document, "unk.json").encode("你好", false) == ids({259, 0}));
  document["model"]["fuse_unk"] = false;
  CHECK(Tokenizer::from_json(document, "unk.json").encode("你好", false) == ids({259, 0, 0}));
}

TEST_CASE("tokenizer: Metaspace pre-tokenizer (prepend_scheme first/always, split)") {
  // Same vocabulary; no normalizer; Metaspace(▁, prepend_scheme "first", split false).
  Tokenizer tokenizer = Tokenizer::load(tokenizer_fixture("metaspace_mistral.json"));
  CHECK(tokenizer.encode("hello world") == ids({1, 276, 281}));
  // "first": only the piece at the start of the text gets ▁; after <s> the piece "hello" does not:
  // h e l l o: l+l (1), ll+o (3); h+e and e+llo are no merges -> h(263) e(264) llo(275).
  CHECK(tokenizer.encode("<s>hello", false) == ids({1, 263, 264, 275}));
  // Decoder ByteFallback + Metaspace: the first token's ▁ is dropped, the others become spaces.
  CHECK(tokenizer.decode(ids({276, 281})) == "hello world");

  json document = load_json(tokenizer_fixture("metaspace_mistral.json"));
  document["pre_tokenizer"]["prepend_scheme"] = "always";
  CHECK(Tokenizer::from_json(document, "always.json").encode("<s>hello", false) == ids({1, 276}));
  // split: true cuts before every ▁: "▁a▁▁b" -> "▁a", "▁", "▁b" (no ▁+▁ across pieces).
  document["pre_tokenizer"]["split"] = true;
  CHECK(Tokenizer::from_json(document, "split.json").encode("a  b", false) == ids({259, 260, 259, 259, 261}));
  document["pre_tokenizer"]["split"] = false;
  CHECK(Tokenizer::from_json(document, "nosplit.json").encode("a  b", false) == ids({259, 260, 282, 261}));
}

TEST_CASE("tokenizer: agrees with the independent Python implementation on every fixture") {
  // tests/data/tokenizers/reference_ids.json: tests/reference/tokenizer_reference.py (Python
  // `regex` module, quadratic BPE) on 41 texts x 2 add_special_tokens settings per fixture.
  json reference = load_json(tokenizer_fixture("reference_ids.json"));
  size_t cases = 0;
  for (auto& item : reference.items()) {  // not a structured binding: clang 14 cannot capture one
    const std::string& fixture = item.key();
    const auto& rows = item.value();
    Tokenizer tokenizer = Tokenizer::load(tokenizer_fixture(fixture));
    for (const auto& row : rows) {
      std::string text = row[0];
      bool add_special = row[1];
      std::vector<uint32_t> expected = row[2];
      CAPTURE(fixture);
      CAPTURE(text);
      CAPTURE(add_special);
      CHECK(tokenizer.encode(text, add_special) == expected);
      cases++;
    }
  }
  CHECK(cases >= 300);
}

TEST_CASE("tokenizer: tokenizer_config.json names bos/eos") {
  fs::path dir = test::temp_dir("tokenizer_config");
  fs::copy_file(tokenizer_fixture("bytelevel_gpt2.json"), dir / "tokenizer.json");
  write_file_atomically(
      dir / "tokenizer_config.json",
      R"({"bos_token": {"content": "<|endoftext|>", "__type": "AddedToken"}, "eos_token": "<|endoftext|>"})");
  Tokenizer tokenizer = Tokenizer::load(dir);
  CHECK(tokenizer.bos_id() == 271u);
  CHECK(tokenizer.eos_id() == 271u);
  CHECK(!tokenizer.adds_bos());  // the post-processor (ByteLevel) adds nothing
  CHECK(!tokenizer.adds_eos());

  // LlamaTokenizerFast takes add_bos_token/add_eos_token from tokenizer_config.json over the
  // tokenizer.json template (transformers' update_post_processor).
  fs::path llama_dir = test::temp_dir("tokenizer_config_llama");
  fs::copy_file(tokenizer_fixture("sentencepiece_llama2.json"), llama_dir / "tokenizer.json");
  json config = {{"tokenizer_class", "LlamaTokenizerFast"},
                 {"bos_token", "<s>"},
                 {"eos_token", "</s>"},
                 {"add_bos_token", false},
                 {"add_eos_token", true}};
  write_file_atomically(llama_dir / "tokenizer_config.json", config.dump());
  Tokenizer eos_only = Tokenizer::load(llama_dir);
  CHECK(eos_only.encode("hello world") == ids({276, 281, 2}));
  CHECK(!eos_only.adds_bos());
  CHECK(eos_only.adds_eos());
  config.erase("add_bos_token");  // default true
  write_file_atomically(llama_dir / "tokenizer_config.json", config.dump());
  CHECK(Tokenizer::load(llama_dir).encode("hello world") == ids({1, 276, 281, 2}));

  // A byte-level tokenizer.json that calls itself LlamaTokenizerFast (DeepSeek-V3) is loaded as it
  // is: transformers 5 then uses TokenizersBackend and adds no BOS (golden: text_real deepseek_v3).
  write_file_atomically(
      dir / "tokenizer_config.json",
      R"({"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<|endoftext|>", "add_eos_token": true})");
  Tokenizer byte_level = Tokenizer::load(dir);
  CHECK(byte_level.encode("hello", true) == byte_level.encode("hello", false));
  CHECK(!byte_level.adds_bos());
}

TEST_CASE("tokenizer: malformed tokenizer.json gives errors naming the file and the JSON path") {
  json base = load_json(tokenizer_fixture("bytelevel_llama3.json"));
  auto error_for = [](const json& document) {
    return user_error_of([&] { Tokenizer::from_json(document, "models/x/tokenizer.json"); });
  };
  json bad_merge = base;
  bad_merge["model"]["merges"][12] = {"a", "b", "c"};
  std::string message = error_for(bad_merge);
  CHECK(message.find("models/x/tokenizer.json: model.merges[12]") != std::string::npos);
  CHECK(message.find("must be \"a b\" or [\"a\", \"b\"]") != std::string::npos);
  CHECK(message.find("HINT: ") != std::string::npos);

  json legacy_bad = load_json(tokenizer_fixture("bytelevel_gpt2.json"));
  legacy_bad["model"]["merges"][3] = "a b c";
  CHECK(error_for(legacy_bad).find("model.merges[3]: \"a b c\" must be two tokens separated by one space") !=
        std::string::npos);

  json unknown_token = base;
  unknown_token["model"]["merges"][5] = {"o", "zz"};
  CHECK(error_for(unknown_token).find("model.merges[5]: token \"zz\" is not in model.vocab") != std::string::npos);

  json unmerged = base;
  unmerged["model"]["merges"].push_back({"a", "b"});  // "ab" is not in the vocabulary
  CHECK(error_for(unmerged).find("model.merges[14]: the merged token \"ab\" is not in model.vocab") !=
        std::string::npos);

  json bad_regex = base;
  bad_regex["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  message = error_for(bad_regex);
  CHECK(message.find("pre_tokenizer.pretokenizers[0].pattern.Regex: invalid regular expression") != std::string::npos);

  json unknown_pre = base;
  unknown_pre["pre_tokenizer"]["pretokenizers"][1]["type"] = "UnicodeScripts";
  message = error_for(unknown_pre);
  CHECK(message.find("pre_tokenizer.pretokenizers[1]: pre-tokenizer type \"UnicodeScripts\" is not supported") !=
        std::string::npos);
  CHECK(message.find("ByteLevel, Split, Metaspace") != std::string::npos);

  json unigram = base;
  unigram["model"]["type"] = "Unigram";
  CHECK(error_for(unigram).find("model.type: model type \"Unigram\" is not supported") != std::string::npos);

  json bad_vocab = base;
  bad_vocab["model"]["vocab"]["hello"] = -3;
  CHECK(error_for(bad_vocab).find("model.vocab.hello: must be a non-negative integer, got -3") != std::string::npos);

  json no_model = base;
  no_model.erase("model");
  CHECK(error_for(no_model).find("models/x/tokenizer.json: model: is missing") != std::string::npos);

  json bad_template = base;
  bad_template["post_processor"]["processors"][1]["single"][0]["SpecialToken"]["id"] = "<nope>";
  CHECK(
      error_for(bad_template).find("post_processor.processors[1].single[0]: special token \"<nope>\" is not defined") !=
      std::string::npos);

  json bad_unk = load_json(tokenizer_fixture("sentencepiece_llama2.json"));
  bad_unk["model"]["unk_token"] = "<missing>";
  CHECK(error_for(bad_unk).find("model.unk_token: \"<missing>\" is not in model.vocab") != std::string::npos);

  fs::path dir = test::temp_dir("tokenizer_errors");
  write_bytes(dir / "tokenizer.json", "{\"model\": ");
  message = user_error_of([&] { Tokenizer::load(dir); });
  CHECK(message.find((dir / "tokenizer.json").string() + ": not valid JSON") != std::string::npos);
  CHECK(user_error_of([&] { Tokenizer::load(dir / "nowhere"); }).find("no tokenizer.json") != std::string::npos);
  // load() streams model.vocab/merges past the JSON document (fast path); a problem there is
  // reported by the ordinary path, with the same place named.
  write_file_atomically(dir / "tokenizer.json", bad_merge.dump());
  CHECK(user_error_of([&] { Tokenizer::load(dir); }).find("tokenizer.json: model.merges[12]: must be \"a b\" or") !=
        std::string::npos);
  write_file_atomically(dir / "tokenizer.json", bad_vocab.dump());
  CHECK(user_error_of([&] {
          Tokenizer::load(dir);
        }).find("model.vocab.hello: must be a non-negative integer, got -3") != std::string::npos);
  write_file_atomically(dir / "tokenizer.json", unknown_token.dump());
  CHECK(user_error_of([&] { Tokenizer::load(dir); }).find("model.merges[5]: token \"zz\" is not in model.vocab") !=
        std::string::npos);
  write_file_atomically(dir / "tokenizer.json", legacy_bad.dump());
  CHECK(user_error_of([&] { Tokenizer::load(dir); }).find("model.merges[3]: \"a b c\" must be two tokens") !=
        std::string::npos);
  // Streamed or not, a well-formed file gives the same tokenizer.
  write_file_atomically(dir / "tokenizer.json", base.dump());
  CHECK(Tokenizer::load(dir).encode("hello world", false) ==
        Tokenizer::from_json(base, "x").encode("hello world", false));

  Tokenizer tokenizer = Tokenizer::from_json(base, "ok.json");
  CHECK(user_error_of([&] { tokenizer.encode(std::string("ab\xff", 3)); }).find("not valid UTF-8 (at byte 2)") !=
        std::string::npos);
}

TEST_CASE("regex: \\s means Oniguruma's White_Space (not U+180E), in and outside classes") {
  const std::string text = "a\u180e b\u3000c\u0085d";  // U+180E is a format character, not a space
  using Matches = std::vector<std::pair<size_t, size_t>>;
  CHECK(Regex(R"(\s+)").find_all(text) == Matches{{4, 5}, {6, 9}, {10, 12}});
  CHECK(Regex(R"([^\s]+)").find_all(text) == Regex(R"(\S+)").find_all(text));
  CHECK(Regex(R"(\S+)").find_all(text) == Matches{{0, 4}, {5, 6}, {9, 10}, {12, 13}});
  CHECK(Regex(R"([\s\d]+)").find_all("1 2\u180e") == Matches{{0, 3}});
  CHECK(Regex(R"(\\s)").find_all("\\s s") == Matches{{0, 2}});  // an escaped backslash, then a literal s
  CHECK(Regex(R"([[:alpha:]\s]+)").find_all("ab c1") == Matches{{0, 4}});
}

// Words of "hello hello hello" / "hello world" by the GPT-2 pattern: "hello" x2, " hello" x2,
// " world" x1. h+e, e+l, l+l, l+o are each seen 4 times; the tie goes to the merged bytes that sort
// first: "el" (256); then h+el, el+l, l+o are 4 each: "ell" (257). Bytes keep id == byte value.
TEST_CASE("tokenizer trainer: merges by count then bytes, loads back, invalid UTF-8 is a UserError") {
  TokenizerTrainOptions options;
  options.vocab_size = 256 + 2 + 3;
  TrainedTokenizer trained = train_bpe_tokenizer({"hello hello hello", "hello world"}, options);
  CHECK(trained.vocab_size == 261u);
  CHECK(trained.bos_id == 258u);
  Tokenizer tokenizer = Tokenizer::from_json(json::parse(trained.tokenizer_json), "trained/tokenizer.json",
                                             json::parse(trained.tokenizer_config_json));
  CHECK(tokenizer.encode("hello", false) == ids({104, 257, 111}));
  CHECK(tokenizer.encode("hello", true) == ids({258, 104, 257, 111}));
  CHECK(tokenizer.decode(tokenizer.encode("hello world", false)) == "hello world");
  std::string message = user_error_of([] { train_bpe_tokenizer({"fine", "bad \xff byte"}, {}); });
  CHECK(message.find("training text 2 is not valid UTF-8 (at byte 4)") != std::string::npos);
}

}  // TEST_SUITE
