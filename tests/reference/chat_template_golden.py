#!/usr/bin/env python3
"""Golden chat-template renderings from transformers itself, for vkt::text's Jinja interpreter.

For each template in tests/data/chat_templates/ (see its README for where each comes from) and each
conversation below, renders transformers.utils.chat_template_utils.render_jinja_template (what
apply_chat_template(tokenize=False) calls) with the family's special tokens, or records that the
template raised. Writes tests/data/chat_templates/golden.json:
  {"versions": {...}, "cases": [{"family", "name", "messages", "add_generation_prompt", "extra",
                                 "expected" | "error"}],
   "whitespace": [[template, expected], ...]}
"whitespace" holds random (seeded) nestings of text, {{ }}, {% if/else/for %} and comments with every
`-`/`+` marker, rendered by transformers' jinja2 environment (trim_blocks, lstrip_blocks).
Run: /work/venv/bin/python tests/reference/chat_template_golden.py
"""
import json
import os
import random
import sys

import jinja2
import transformers
from transformers.utils.chat_template_utils import _compile_jinja_template, render_jinja_template

PINNED = {"transformers": "5.23.0", "jinja2": jinja2.__version__}
if transformers.__version__ != PINNED["transformers"]:
    sys.exit(f"expected transformers {PINNED['transformers']}, found {transformers.__version__}")

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "chat_templates")
FAMILIES = ["chatml", "llama2", "llama3", "llama3_1", "qwen3", "gemma3", "deepseek_v3"]

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
TRICKY = "  Grüße 👋 — \"double\" and 'single' quotes,\ttab,\nnew line\n\n  indented \\ backslash  "
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city (°C).",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


CASES = [
    ("system_user_assistant", [SYSTEM, user("Hi!"), assistant("Hello, how can I help?")], False, {}),
    ("multi_turn", [SYSTEM, user("What is 2+2?"), assistant("4"), user("And 3+3?"), assistant("6")], False, {}),
    ("no_system", [user("Hi!"), assistant("Hello.")], False, {}),
    ("no_system_multi_turn", [user("a"), assistant("b"), user("c"), assistant("d")], False, {}),
    ("generation_prompt", [SYSTEM, user("Tell me a joke.")], True, {}),
    ("generation_prompt_no_system", [user("Tell me a joke.")], True, {}),
    ("ends_with_user_no_prompt", [user("a"), assistant("b"), user("c")], False, {}),
    ("unicode_newlines_quotes", [{"role": "system", "content": TRICKY}, user(TRICKY), assistant(TRICKY)], False, {}),
    ("unicode_generation_prompt", [user(TRICKY), assistant(TRICKY), user("日本語のテキスト")], True, {}),
    ("empty_assistant", [user("x"), assistant("")], False, {}),
    ("two_users_in_a_row", [user("a"), user("b"), assistant("c")], False, {}),
    ("assistant_first", [assistant("I start."), user("ok")], False, {}),
    ("think_in_content", [user("Why?"), assistant("<think>\nBecause.\n</think>\n\nIt is so.")], False, {}),
    ("think_multi_turn", [user("q1"), assistant("<think>r1</think>a1"), user("q2"), assistant("<think>r2</think>a2")], False, {}),
    ("reasoning_content_field", [user("q"), {"role": "assistant", "content": "a", "reasoning_content": "because"}], False, {}),
    ("enable_thinking_false", [user("q")], True, {"enable_thinking": False}),
    ("tools", [user("Weather in Paris?")], True, {"tools": [WEATHER_TOOL]}),
    ("tool_calls", [user("Weather in Paris?"),
                    {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
                        "name": "get_weather", "arguments": {"city": "Paris"}}}]},
                    {"role": "tool", "content": "{\"temp\": 21}"}, assistant("21 °C.")], False, {}),
    ("system_only", [SYSTEM], True, {}),
    ("jinja_like_content", [user("{{ not a tag }} {% if %} {# x #}"), assistant("}} %} \u0001 \u007f \\n")], False, {}),
    ("system_in_the_middle", [user("a"), SYSTEM, assistant("b")], False, {}),
    ("long_conversation", [SYSTEM] + [m for i in range(6) for m in (user(f"q{i}"), assistant(f"a{i}"))], True, {}),
]


WHITESPACE_TEXTS = ["", " ", "  ", "\n", " \n", "\n  ", "\t", "a", " b ", "c\n", "\n\nd  ", "  \t\n e"]


def random_tag(rng, body):
    if body == "output":
        return "{{" + rng.choice(["", "-"]) + " 'x' " + rng.choice(["", "-"]) + "}}"
    if body == "comment":
        return "{#" + rng.choice(["", "-"]) + " c " + rng.choice(["", "-"]) + "#}"
    return "{%" + rng.choice(["", "-", "+"]) + " " + body + " " + rng.choice(["", "-", "+"]) + "%}"


def random_template(rng, depth=0):
    out = ""
    for _ in range(rng.randint(1, 4)):
        out += rng.choice(WHITESPACE_TEXTS)
        k = rng.random()
        if k < 0.3:
            out += random_tag(rng, "output")
        elif k < 0.45:
            out += random_tag(rng, "comment")
        elif k < 0.7 and depth < 2:
            out += random_tag(rng, "if true") + random_template(rng, depth + 1)
            if rng.random() < 0.3:
                out += random_tag(rng, "else") + random_template(rng, depth + 1)
            out += random_tag(rng, "endif")
        elif k < 0.85 and depth < 2:
            out += random_tag(rng, "for i in [1, 2]") + random_template(rng, depth + 1) + random_tag(rng, "endfor")
        out += rng.choice(WHITESPACE_TEXTS)
    return out


def whitespace_cases(count=300):
    rng = random.Random(7)
    cases = []
    for _ in range(count):
        template = random_template(rng) + rng.choice(["", "\n", "\n\n"])
        cases.append([template, _compile_jinja_template(template).render()])
    return cases


def main():
    special = json.load(open(os.path.join(DATA, "special_tokens.json"), encoding="utf-8"))
    cases = []
    for family in FAMILIES:
        template = open(os.path.join(DATA, family + ".jinja"), encoding="utf-8").read()
        for name, messages, add_generation_prompt, extra in CASES:
            case = {"family": family, "name": name, "messages": messages,
                    "add_generation_prompt": add_generation_prompt, "extra": extra}
            kwargs = dict(extra)
            tools = kwargs.pop("tools", None)
            try:
                rendered, _ = render_jinja_template(conversations=[json.loads(json.dumps(messages))], tools=tools,
                                                    chat_template=template,
                                                    add_generation_prompt=add_generation_prompt,
                                                    **special[family], **kwargs)
                case["expected"] = rendered[0]
            except Exception as error:  # the template rejects the conversation: vktune must too
                case["error"] = f"{type(error).__name__}: {error}"
            cases.append(case)
    out = {"versions": {"transformers": transformers.__version__, "jinja2": jinja2.__version__}, "cases": cases,
           "whitespace": whitespace_cases()}
    with open(os.path.join(DATA, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    errors = sum("error" in c for c in cases)
    print(f"{len(cases)} cases ({errors} raise) -> {os.path.join(DATA, 'golden.json')}")


if __name__ == "__main__":
    main()
