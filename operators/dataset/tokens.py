"""Token counts for the training columns, with a Hugging Face `tokenizers` tokenizer.

`BUNDLED` is SmolLM2-135M-Instruct's tokenizer (Apache-2.0), shipped in this folder so that counting needs no
model download and no `transformers`. Other tokenizers: a local folder holding `tokenizer.json`, such a file
itself, or a Hugging Face id (fetched from the hub, so it needs network).

A count is the number of tokens of the text alone, without special tokens: `n_tokens` of a record is its
prompt's count plus its completion's, which is what TRL's SFTTrainer sees for a prompt/completion dataset
before it adds one end-of-sequence token.
"""

from __future__ import annotations

import gzip
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

BUNDLED = "smollm2-135m"
_BUNDLED_FILE = "smollm2-135m-tokenizer.json.gz"


class TokenizerUnavailable(ValueError):
    """The configured tokenizer cannot be loaded here."""


@cache
def load(name: str) -> Tokenizer:
    """The tokenizer called `name`: `BUNDLED`, a folder with tokenizer.json, or a Hugging Face id."""
    from tokenizers import Tokenizer  # loaded where counting happens; the config only needs the names here

    if name == BUNDLED:
        data = resources.files("operators.dataset").joinpath(_BUNDLED_FILE).read_bytes()
        return Tokenizer.from_str(gzip.decompress(data).decode())
    path = Path(name).expanduser()
    if not path.exists() and name.startswith(("/", ".", "~")):
        raise TokenizerUnavailable(f"no tokenizer at {name}: give a folder with tokenizer.json, a tokenizer.json "
                                   "file, or a Hugging Face id")
    try:
        if path.exists():
            return Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))
        return Tokenizer.from_pretrained(name)
    except Exception as err:  # tokenizers raises plain Exception for a missing file or an unreachable hub
        raise TokenizerUnavailable(f"cannot load the tokenizer {name!r}: {str(err).splitlines()[0]}") from err


def count(tokenizer: Tokenizer, texts: list[str]) -> list[int]:
    """Tokens of each text, without special tokens."""
    return [len(encoding.ids) for encoding in tokenizer.encode_batch(texts, add_special_tokens=False)]
