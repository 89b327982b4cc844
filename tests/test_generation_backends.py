"""Generation backends: transformers on a tiny random model, HTTP on loopback."""

from __future__ import annotations

import pytest

from provex.models import build_tiny_model
from provex.prolog.generation import (
    Chat,
    HTTPError,
    OpenAIGenerator,
    SamplingParams,
    ScriptedGenerator,
    TransformersGenerator,
    build_generator,
    render_plain,
    truncate_at_stop,
)
from provex.prolog.serving import OpenAIServer

CHAT = Chat(
    [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
    separator="\n",
)


@pytest.fixture(scope="module")
def tiny():
    import torch

    torch.set_num_threads(1)
    model, tokenizer = build_tiny_model()
    return TransformersGenerator(model, tokenizer, batch_size=2)


# --- pure helpers -----------------------------------------------------------


def test_sampling_defaults():
    params = SamplingParams()
    assert (params.temperature, params.top_p, params.max_tokens) == (0.2, 0.95, 1024)
    assert params.stop == ("</answer>",)


@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", -0.1), ("top_p", 0.0), ("max_tokens", 0), ("n", 0)],
)
def test_sampling_rejects_invalid(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})


def test_truncate_keeps_stop():
    assert truncate_at_stop("a</answer>b</answer>", ["</answer>"]) == (
        "a</answer>",
        True,
    )


def test_truncate_earliest_stop():
    assert truncate_at_stop("xyBAz", ["A", "B"]) == ("xyB", True)


def test_truncate_without_stop():
    assert truncate_at_stop("abc", ["</answer>"]) == ("abc", False)


def test_render_plain_roles():
    assert render_plain(CHAT) == "(SYSTEM) S\n(USER) Q"


def test_scripted_records_params():
    generator = ScriptedGenerator(["a</answer>tail"])
    out = generator.generate(["p"], SamplingParams(temperature=0.5))
    assert out[0].text == "a</answer>"
    assert generator.calls[0][1].temperature == 0.5


def test_build_generator_rejects_unknown():
    with pytest.raises(ValueError, match="unknown backend 'tgi'"):
        build_generator("tgi", "m")


def test_openai_needs_base_url():
    with pytest.raises(ValueError, match="--base-url"):
        build_generator("openai", "m")


def test_vllm_missing_is_clear():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="--backend transformers"):
            build_generator("vllm", "tiny-random-qwen2")
    else:
        pytest.skip("vllm is installed; the missing-package message is not reachable")


# --- transformers -------------------------------------------------------------


def test_transformers_counts(tiny):
    out = tiny.generate(["(USER) a", CHAT, "b"], SamplingParams(max_tokens=5, n=2))
    assert len(out) == 6
    assert all(g.tokens <= 5 for g in out)


def test_transformers_max_tokens_reason(tiny):
    out = tiny.generate(["x"], SamplingParams(temperature=0, max_tokens=4, stop=()))
    assert out[0].tokens == 4
    assert out[0].finish_reason == "length"


def test_transformers_stop_string(tiny):
    # A seeded sample repeats exactly, so the run with a stop string must give the
    # same text cut after the stop. The prompt ends in "|", which the stop lacks,
    # so no match can start inside the prompt.
    prompt = "(USER) count|"
    sampled = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=24, stop=(), seed=5)
    full = tiny.generate([prompt], sampled)[0].text
    stop = full[8:12]
    assert stop.strip()
    assert "|" not in stop
    cut = tiny.generate([prompt], sampled.with_(stop=(stop,)))[0].text
    assert cut == full[: full.find(stop) + len(stop)]


def test_transformers_seed_repeats(tiny):
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=8, stop=(), seed=3)
    first = tiny.generate(["q"], params)[0].text
    second = tiny.generate(["q"], params)[0].text
    assert first == second


def test_transformers_samples_differ(tiny):
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=8, stop=(), n=4)
    texts = [g.text for g in tiny.generate(["q"], params.with_(seed=1))]
    assert len(set(texts)) > 1


def test_transformers_tiny_top_p_is_greedy(tiny):
    # A nucleus of mass 1e-6 contains only the most likely token.
    greedy = SamplingParams(temperature=0, max_tokens=6, stop=())
    narrow = SamplingParams(temperature=1.0, top_p=1e-6, max_tokens=6, stop=(), n=2)
    expected = tiny.generate(["(USER) one"], greedy)[0].text
    got = [g.text for g in tiny.generate(["(USER) one"], narrow)]
    assert got == [expected, expected]


def test_transformers_batch_matches_single(tiny):
    greedy = SamplingParams(temperature=0, max_tokens=6, stop=())
    alone = tiny.generate(["(USER) one"], greedy)[0].text
    batched = tiny.generate(["(USER) one", "(USER) a longer prompt"], greedy)[0].text
    assert batched == alone


def test_transformers_chat_style(tiny):
    tiny.prompt_style = "chat"
    try:
        rendered = tiny.render(CHAT)
    finally:
        tiny.prompt_style = "plain"
    assert rendered == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_transformers_lora_adapter(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    model, _ = build_tiny_model()
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    get_peft_model(model, config).save_pretrained(tmp_path / "adapter")
    generator = TransformersGenerator.from_source(
        "tiny-random-qwen2", adapter=tmp_path / "adapter", device="cpu"
    )
    out = generator.generate(["q"], SamplingParams(max_tokens=3))
    assert isinstance(generator.model, PeftModel)
    assert len(out) == 1


# --- OpenAI-compatible HTTP ---------------------------------------------------


def test_http_completion_keeps_stop():
    backend = ScriptedGenerator(["<answer>x</answer> more"], repeat_last=True)
    with OpenAIServer(backend) as server:
        client = OpenAIGenerator(server.base_url, "m")
        out = client.generate(["p"], SamplingParams())
        body = server.requests[0]
    assert out[0].text == "<answer>x</answer>"
    assert body["stop"] == ["</answer>"]
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.95
    assert body["max_tokens"] == 1024


def test_http_restores_dropped_stop():
    backend = ScriptedGenerator(["<answer>x</answer>"], repeat_last=True)
    with OpenAIServer(backend) as server:
        client = OpenAIGenerator(server.base_url, "m", include_stop_str=False)
        out = client.generate(["p"], SamplingParams())
    assert out[0].text == "<answer>x</answer>"


def test_http_sends_rendered_prompt():
    backend = ScriptedGenerator(["ok"], repeat_last=True)
    with OpenAIServer(backend) as server:
        OpenAIGenerator(server.base_url, "m").generate([CHAT], SamplingParams())
        body = server.requests[0]
    assert body["prompt"] == "(SYSTEM) S\n(USER) Q"
    assert body["model"] == "m"


def test_http_chat_mode_messages():
    backend = ScriptedGenerator(["ok"], repeat_last=True)
    with OpenAIServer(backend) as server:
        client = OpenAIGenerator(server.base_url, "m", mode="chat")
        out = client.generate([CHAT], SamplingParams())
        body = server.requests[0]
    assert body["messages"] == CHAT.messages
    assert out[0].text == "ok"


def test_http_n_samples_in_order():
    backend = ScriptedGenerator(["a", "b", "c", "d"])
    with OpenAIServer(backend) as server:
        client = OpenAIGenerator(server.base_url, "m", concurrency=1)
        out = client.generate(["p", "q"], SamplingParams(n=2))
    assert [g.text for g in out] == ["a", "b", "c", "d"]


def test_http_api_key_header(monkeypatch):
    seen = []

    def hook(path, body, headers):
        seen.append(headers.get("Authorization"))
        return None

    monkeypatch.setenv("PROVEX_TEST_KEY", "secret")
    with OpenAIServer(ScriptedGenerator(["ok"], repeat_last=True), hook=hook) as server:
        OpenAIGenerator(server.base_url, "m", api_key_env="PROVEX_TEST_KEY").generate(
            ["p"], SamplingParams()
        )
    assert seen == ["Bearer secret"]


def test_http_retries_server_errors():
    failures = {"left": 2}

    def hook(path, body, headers):
        if failures["left"]:
            failures["left"] -= 1
            return 503, {"error": {"message": "busy"}}
        return None

    with OpenAIServer(ScriptedGenerator(["ok"], repeat_last=True), hook=hook) as server:
        client = OpenAIGenerator(server.base_url, "m", retries=2, backoff=0.01)
        out = client.generate(["p"], SamplingParams())
        attempts = len(server.requests)
    assert out[0].text == "ok"
    assert attempts == 3


def test_http_client_error_not_retried():
    def hook(path, body, headers):
        return 401, {"error": {"message": "bad key"}}

    with OpenAIServer(ScriptedGenerator(["ok"]), hook=hook) as server:
        client = OpenAIGenerator(server.base_url, "m", retries=3, backoff=0.01)
        with pytest.raises(HTTPError, match="HTTP 401"):
            client.generate(["p"], SamplingParams())
        attempts = len(server.requests)
    assert attempts == 1


def test_http_unreachable_fails_after_retries():
    server = OpenAIServer(ScriptedGenerator(["ok"]))
    url = server.base_url
    server.stop()  # the port is closed now
    client = OpenAIGenerator(url, "m", retries=1, backoff=0.01, timeout=2)
    with pytest.raises(HTTPError, match="after 2 tries"):
        client.generate(["p"], SamplingParams())


def test_http_backed_by_tiny_model(tiny):
    with OpenAIServer(tiny) as server:
        client = OpenAIGenerator(server.base_url, "tiny")
        out = client.generate(["(USER) hi"], SamplingParams(max_tokens=5, stop=()))
    assert out[0].tokens == 5
    assert out[0].finish_reason == "length"


def test_chat_template_role_fallback():
    from provex.models import build_tiny_tokenizer
    from provex.prolog.generation import render_chat_template

    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}"
        "{% if m['role'] not in ['user', 'assistant'] %}"
        "{{ raise_exception('unsupported role') }}{% endif %}"
        "{{ m['role'] + ':' + m['content'] + '|' }}{% endfor %}"
    )
    chat = Chat(
        [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "A"},
            {"role": "tool", "content": "4"},
        ]
    )
    assert render_chat_template(tokenizer, chat) == (
        "user:(SYSTEM) S\n\nQ|assistant:A|user:(TOOL) 4|"
    )
