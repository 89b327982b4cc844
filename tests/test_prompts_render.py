"""System prompts and the chat and plain renderings."""

import pytest

from provex.prolog.prompts import (
    INSTRUCTION,
    PROMPT_NAMES,
    build_messages,
    load_prompt,
    render,
    render_chat,
    render_plain,
    render_transcript,
    user_message,
)

CLPQ = ":- use_module(library(clpq))."


@pytest.mark.parametrize("name", PROMPT_NAMES)
def test_prompt_has_reasoning_block(name):
    assert "<reasoning>" in load_prompt(name)


@pytest.mark.parametrize("name", PROMPT_NAMES)
def test_prompt_has_answer_block(name):
    assert "<answer>" in load_prompt(name)


@pytest.mark.parametrize("name", PROMPT_NAMES)
def test_prompt_has_clpq_import(name):
    assert CLPQ in load_prompt(name)


@pytest.mark.parametrize("name", PROMPT_NAMES)
def test_prompt_has_solve(name):
    assert "solve(X" in load_prompt(name)


@pytest.mark.parametrize("name", ["tool", "mmlu"])
def test_tool_prompt_declares_run_prolog(name):
    import json

    prompt = load_prompt(name)
    declaration = prompt.split("<tools>")[1].split("</tools>")[0]
    tool = json.loads(declaration)
    assert tool["name"] == "run_prolog"
    assert tool["arguments"] == {"code": "string"}
    assert "<tool_call>" in prompt


def test_declare_prompt_asks_named_facts():
    assert "one fact per number" in load_prompt("declare")


def test_mmlu_prompt_zero_based():
    assert "zero-based index" in load_prompt("mmlu")


def test_prompt_aliases():
    assert load_prompt("sp-struct") == load_prompt("struct")
    assert load_prompt("SP_Declare") == load_prompt("declare")


def test_prompt_from_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("Custom prompt.\n", encoding="utf-8")
    assert load_prompt(str(path)) == "Custom prompt."


def test_prompt_unknown_name():
    with pytest.raises(ValueError, match="unknown system prompt"):
        load_prompt("nope")


def test_user_message_joins_instruction():
    assert user_message("Q?") == f"{INSTRUCTION}\nQ?"


def test_user_message_without_instruction():
    assert user_message(" Q? ", None) == "Q?"


def test_build_messages_roles():
    messages = build_messages("Q?", "base")
    assert [m["role"] for m in messages] == ["system", "user"]


def test_build_messages_tool_prefix():
    messages = build_messages("Q?", "tool")
    assert messages[1]["content"] == f"Please solve this problem: {INSTRUCTION}\nQ?"


def test_render_plain():
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {"role": "user", "content": "ignored"},
    ]
    assert render_plain(messages) == "(SYSTEM) S\n(USER) U"


def test_render_transcript():
    messages = [
        {"role": "user", "content": "U"},
        {"role": "tool", "content": "13000"},
    ]
    assert render_transcript(messages) == "(USER) U\n\n(TOOL) 13000"


class _TemplateTokenizer:
    chat_template = "x"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


def test_render_chat_uses_template():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert render_chat(messages, _TemplateTokenizer()) == "<system>S<user>U<assistant>"


def test_render_chat_tiny_model_tokenizer():
    from provex.models import build_tiny_model

    _, tokenizer = build_tiny_model()
    messages = build_messages("What is 2+2?", "struct")
    text = render(messages, "chat", tokenizer)
    assert "What is 2+2?" in text


def test_render_chat_without_template():
    class Bare:
        chat_template = None

    with pytest.raises(ValueError, match="no chat template"):
        render_chat([], Bare())


def test_render_unknown_mode():
    with pytest.raises(ValueError, match="unknown render mode"):
        render([], "xml")
