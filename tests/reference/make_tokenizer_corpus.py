"""Writes tests/data/tokenizers/corpus.jsonl: the lines every real tokenizer is checked on
(tokenizer_corpus_golden.py gives HF's ids for them). Deterministic: hand-written lines plus a few
systematic families (whitespace runs, digit runs, special tokens in text). Run:
  /work/venv/bin/python tests/reference/make_tokenizer_corpus.py
"""
import json
import pathlib
import unicodedata

PROSE = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll like it; they've said we'd go, and it's John's.",
    "I'M SURE YOU'LL LIKE IT; THEY'VE SAID WE'D GO.",
    "Don't stop—it’s “quoted” text… with «guillemets» and ‘single’ quotes.",
    "e-mail: someone@example.com, URL: https://example.org/path?q=1&x=%20y#frag",
    "Café, naïve, façade, coöperate, résumé, jalapeño, Ångström, Øresund, Łódź, Škoda.",
    "Ærøskøbing ligger på Ærø; Straße, Maß, Fußgängerübergänge.",
    "Привет, мир! Как дела? Съешь же ещё этих мягких французских булок.",
    "Україна, Київ; Беларусь; Српски језик; Български.",
    "Γειά σου Κόσμε· το ελληνικό αλφάβητο.",
    "안녕하세요, 세계! 한국어 문장을 토큰화합니다.",
    "대한민국의 수도는 서울입니다. 날씨가 좋네요 ㅋㅋㅋ",
    "你好，世界！我们今天学习分词器。",
    "中华人民共和国成立于1949年10月1日。",
    "繁體中文：臺灣、香港、澳門。",
    "こんにちは世界。カタカナとひらがなと漢字。",
    "東京タワーは３３３メートルです。ｶﾀｶﾅ（半角）",
    "مرحبا بالعالم! اللغة العربية جميلة.",
    "שלום עולם, עברית משמאל לימין?",
    "नमस्ते दुनिया! हिन्दी भाषा देवनागरी में लिखी जाती है।",
    "বাংলা ভাষা; தமிழ் மொழி; తెలుగు; ಕನ್ನಡ; മലയാളം.",
    "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "Tiếng Việt có dấu: Xin chào thế giới, cảm ơn nhiều.",
    "Türkçe: İstanbul, ığdır, şöyle, çok güzel.",
    "Polski: zażółć gęślą jaźń. Čeština: příliš žluťoučký kůň.",
    "ქართული ენა; Հայերեն; አማርኛ; ᏣᎳᎩ.",
    "Mixed: English, 日本語, 한국어, العربية, and русский in one line.",
    "ﬁ ﬂ ﬀ ligatures, ½ ¼ ², ℌ ℍ, Ⅻ roman, ㈱ ㎏ ㍻ compatibility forms.",
    "Math: ∀x∈ℝ, ∑ᵢ xᵢ² ≤ ∫₀^∞ e^{-t} dt ≈ 1; α+β=γ; ∂f/∂x.",
    "Currency: $1,234.56 €99,99 £5 ¥1000 ₹250 ₩5000 ₿0.001",
    "Symbols: © ® ™ § ¶ † ‡ • ° ± × ÷ ← → ↑ ↓ ♠ ♥ ♦ ♣ ☃ ✓ ✗",
    "Box drawing: ┌─┬─┐ │ │ │ └─┴─┘ ░▒▓█",
    "Zero width: a\u200bb c\u200cd e\u200df \ufeffBOM in the middle",
    "Soft\u00adhyphen and no\u00a0break\u00a0space and thin\u2009space and ideographic\u3000space.",
    "Line separator\u2028paragraph separator\u2029end",
    "Control-ish: bell\u0007 escape\u001b[0m delete\u007f",
    "a",
    " ",
    "!",
    "'s",
    "'S're've",
    "...",
    "!!!???",
    "--- *** ___ === +++",
    "~`!@#$%^&*()_+-={}[]|\\:;\"'<>,.?/",
]

CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "import numpy as np\nx = np.arange(10).reshape(2, 5)  # comment\nprint(f\"{x.sum():.3f}\")",
    "class Foo(Base):\n\t\"\"\"Docstring.\"\"\"\n\tdef __init__(self, *args, **kwargs):\n\t\tsuper().__init__()\n",
    "lambda x: [y ** 2 for y in range(x) if y % 3 == 0]",
    "#include <vector>\nint main() {\n  std::vector<int> v{1, 2, 3};\n  for (auto& x : v) x <<= 1;\n  return 0;\n}\n",
    "template <typename T> constexpr T max(T a, T b) noexcept { return a > b ? a : b; }",
    "auto p = std::make_unique<Foo>(); p->bar(&baz, nullptr); // C++20",
    "if (a && !b || c != d) { x += 0x1F; y -= 0b1010; z = ~w ^ 0777; }",
    "{\"name\": \"vktune\", \"version\": \"0.1.0\", \"tags\": [\"lora\", \"vulkan\"], \"n\": 3.14e-10, \"ok\": true, \"x\": null}",
    "[{\"role\": \"user\", \"content\": \"Hi!\"}, {\"role\": \"assistant\", \"content\": \"Hello.\"}]",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "<html><body><div class=\"x\">Hello &amp; welcome</div></body></html>",
    "$ git commit -m 'fix: tokenizer' && ./build.sh --release 2>&1 | tee log.txt",
    "fn main() { let v: Vec<u8> = vec![0; 16]; println!(\"{:?}\", v); }",
    "x=1;y=2;z=x+y;print(z)",
    "    indented four\n        indented eight\n\tindented tab\n\t\ttwo tabs",
    "// TODO(someone): handle the edge case where n == 0\n/* block\n   comment */",
    "\\begin{equation} E = mc^2 \\end{equation} % LaTeX",
    "key: value\nlist:\n  - a\n  - b\nnested:\n  k: 'v'",
    "path/to/file.txt C:\\Users\\Name\\Documents\\file.docx ../../up",
]

NUMBERS = [
    "0", "7", "42", "123", "1234", "12345", "123456", "1234567", "12345678901234567890",
    "3.14159265358979323846264338327950288419716939937510",
    "0.0001 1e10 -2.5e-3 +7 1,000,000 1.000.000,00 10^9",
    "Phone: +1 (555) 123-4567; ISBN 978-3-16-148410-0",
    "In 2024, 1.5% of 3,000 people spent $12.99 on 4 items at 09:30:15.",
    "٠١٢٣٤٥٦٧٨٩ Arabic-Indic digits; १२३ Devanagari digits; １２３ fullwidth",
    "v1.2.3-rc.4+build.567",
    "IPv4 192.168.0.1 and IPv6 2001:0db8:85a3::8a2e:0370:7334",
    "".join(str(i % 10) for i in range(200)),
    "999999999999999999999999999999 0000000000",
    "1st 2nd 3rd 4th 21st 100th",
    "x1y2z3 a10b20c30 abc123def456",
]

EMOJI = [
    "😀😃😄😁 faces",
    "👍👍🏻👍🏼👍🏽👍🏾👍🏿 skin tones",
    "👨‍👩‍👧‍👦 family ZWJ, 👩🏽‍💻 technologist, 🏳️‍🌈 rainbow flag, 🏴‍☠️ pirate",
    "🇺🇸🇯🇵🇰🇷🇩🇪🇫🇷🇧🇷 flags",
    "🏴󠁧󠁢󠁳󠁣󠁴󠁿 Scotland tag sequence",
    "❤️ ❤ ☺️ ✌🏾 keycaps 1️⃣ #️⃣ *️⃣",
    "I love 🍕 and 🍣! 🎉🎉🎉",
    "🤷‍♀️🤦🏻‍♂️🧑‍🤝‍🧑",
    "emoji at end 🚀",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙 𝓈𝒸𝓇𝒾𝓅𝓉 (astral plane letters)",
    "𠀀𠀁𠀂 CJK extension B, 🀄 mahjong, 𓀀 hieroglyph",
]

SPECIAL = [
    "<s>", "</s>", "<unk>", "<s>hello</s>", "<s> hello </s>", " <s> spaced </s> ",
    "<|begin_of_text|>Hello<|end_of_text|>", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|reserved_special_token_0|> <|reserved_special_token_250|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user<|im_end|><|im_start|>", "<|endoftext|>", "text<|endoftext|>more text",
    "<think>\nreasoning\n</think>\n\nanswer", "<tool_call>{\"name\": \"f\"}</tool_call>",
    "<|fim_prefix|>def f(<|fim_suffix|>):<|fim_middle|>", "<|vision_start|><|image_pad|><|vision_end|>",
    "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>", "<eos><pad><mask>",
    "<start_of_image><image_soft_token><end_of_image>", "<unused0><unused99>",
    "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>Hello<｜end▁of▁sentence｜>",
    "<|start|>user<|message|>Hi<|end|><|start|>assistant<|channel|>final<|message|>Hello<|return|>",
    "<|startoftext|>x<|call|><|constrain|>json",
    "<0x41><0xE4> byte tokens spelled out", "<|im_start", "im_start|>", "< s >", "<<s>>", "<|<|im_end|>|>",
    "</s></s></s>", "<s><s>", "a<s>b</s>c", "▁ the metaspace character ▁▁ itself",
    "Ġ Ċ byte-level stand-ins ĠĠ",
]

NFC_NFD = [
    ("NFC", "é ñ ü Å ǅ ế ṩ"), ("NFD", "é ñ ü Å ǅ ế ṩ"),
    ("NFC", "한국어 조합형"), ("NFD", "한국어 조합형"),
    ("NFC", "Vietnamese: Việt Nam, Hà Nội"), ("NFD", "Vietnamese: Việt Nam, Hà Nội"),
    ("NFD", "Ångström Åland"), ("NFKC", "ﬁ ½ ① ｶ"),
]

COMBINING = [
    "e\u0301 a\u0300 o\u0308 n\u0303 c\u0327 (combining marks after letters)",
    "\u0301 starting with a combining mark",
    "Z̷̢͉̝a̶̦͍l̸̰̈g̵̣͝o̸͎̊ text",
    "q\u0307\u0323 stacked marks, \u1100\u1161\u11a8 conjoining jamo",
    "ह\u093f\u0902 devanagari with vowel signs, ক্ষ conjunct",
]

# Places where regex engines, Unicode tables or added-token matching are known to disagree.
STRESS = [
    "Mongolian\u180evowel separator and \u180e alone",  # PCRE2's \s matches U+180E, Oniguruma's not
    "NEL\u0085next line, VT\u000bvertical tab, FF\u000cform feed, CR\ronly",
    "Spaces: en\u2002em\u2003thin\u2009hair\u200amath\u205fogham\u1680narrow\u202fend",
    "IT'S, it\u2019s, it's, 'tis, rock'n'roll, o'clock, y'all'd've",
    "'ll 're 've 'm 'd 's 't at the start",
    " 's", "''", "'''", "'\n's", "a'\u0301s",
    "Private use \ue000\uf8ff, noncharacters \ufdd0 \ufffe, specials \ufffc \ufffd",
    "Plane 15/16: \U000f0000 \U0010fffd, tags \U000e0041\U000e0042",
    "Unassigned \u0378 \u05ff and around the surrogates \ud7ff \ue000",
    "ǅungla ǈ ǋ titlecase digraphs, ß ẞ, İi Iı, ﬀ",
    "Ⅷ ⅷ ↂ roman numerals (Nl), ² ³ ¹ (No), ½ (No), ① ⑳ (No), 𝟘𝟙𝟚 (Nd)",
    "١٢٣.٤٥ Arabic decimal, ۱۲۳ Persian, ๑๒๓ Thai, ０１２３ fullwidth",
    "12,345,678.90 and 0.000001 and 1_000_000 and 0x7fffffff",
    "\t\t\tdef f():\r\n\t\t\t\treturn 1\r\n",
    "trailing spaces before newline   \nnext   \n\n   last",
    "<|im_end|><|im_end|>x<|im_end|> <|im_end|>  <|im_end|>\n",
    "<|eot_id|>\n\n<|start_header_id|>", "<s>\n</s>\t<s> </s>",
    "<｜User｜>normalized added token<｜Assistant｜>", "<|EOT|> and <｜tool▁sep｜>",
    "<mask> [multimodal] <unused5>", "▁▁▁▁ four metaspaces then \n\n\n\n four newlines",
    "\u3000\u3000全角スペース\u3000", "ｈｅｌｌｏ　ｗｏｒｌｄ (fullwidth Latin)",
    "ﾊﾟﾋﾟﾌﾟ half-width katakana with voiced marks",
    "가각간갇갈갉갊 각 한글 자모",
    "Ελληνικά: ά έ ή ί ό ύ ώ ΐ ΰ", "Tiếng Việt: ắ ằ ẳ ẵ ặ ầ ấ ẩ ẫ ậ",
    "x" * 40 + " " + "y" * 40, "ab" * 5 + "\n" * 5 + "cd" * 5,
]

WHITESPACE_BODIES = ["word", "two words", "line one\nline two", "a\tb"]
WHITESPACE_RUNS = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", " \n", "\n ", " \t\n ",
                   "\u00a0", "\u3000", "        "]


def whitespace_lines():
    lines = []
    for run in WHITESPACE_RUNS:
        for body in WHITESPACE_BODIES[:2]:
            lines.append(run + body)          # leading
            lines.append(body + run)          # trailing
        lines.append(run)                     # only whitespace
        lines.append("a" + run + "b" + run + "c")  # inside
    lines += ["\n\n\nThree leading newlines", "trailing newlines\n\n\n", "  \n\t  mixed \t\n  ", " " * 40,
              "\t" * 12, "\n" * 20, "x" + " " * 17 + "y", "word \n word \t word  \r\n word"]
    return lines


def main():
    lines = []
    for text in PROSE + CODE + NUMBERS + EMOJI + SPECIAL + COMBINING + STRESS:
        lines.append(text)
    for form, text in NFC_NFD:
        lines.append(unicodedata.normalize(form, text))
    lines += whitespace_lines()
    # Prose again with a leading space and with sentence pairs: words at other positions.
    lines += [" " + text for text in PROSE[:25]]
    lines += [PROSE[i] + " " + PROSE[i + 1] for i in range(0, 40, 2)]
    lines += [text.upper() for text in PROSE[:12]] + [text.lower() for text in PROSE[:12]]
    # Long lines: a few paragraphs joined (long pre-tokens, cache behaviour).
    lines.append("\n\n".join(PROSE[:20]))
    lines.append("\n".join(CODE[:6]))
    lines.append("a" * 300)
    lines.append("ab" * 150)
    lines.append("한" * 100)
    lines.append("🙂" * 50)
    seen, unique = set(), []
    for line in lines:
        if line not in seen:
            seen.add(line)
            unique.append(line)
    out = pathlib.Path(__file__).resolve().parents[1] / "data/tokenizers/corpus.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        for line in unique:
            f.write(json.dumps({"text": line}, ensure_ascii=False) + "\n")
    print(f"{out}: {len(unique)} lines")


if __name__ == "__main__":
    main()
