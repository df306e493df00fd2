"""The `tracecot` command. Bad arguments, config or input: one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from typing import Any, NoReturn

import yaml

from operators.eval.scoring import BENCHES
from pipeline import __version__
from pipeline import config as cfg

EXIT_USAGE = 2


EXIT_EMPTY = 1  # input rows were read, but not one record came out of them

# Errors that mean "your input, config or machine is not right": one line and exit 2, never a traceback. They are
# named by module so that `--help` imports none of the heavy ones; an error can only come from a loaded module.
USER_ERRORS = (("pipeline.config", "ConfigError"), ("pipeline.sources", "InputError"),
               ("pipeline.storage", "StorageError"), ("operators.sandbox.client", "SandboxUnavailable"),
               ("operators.sandbox.calls", "BadInput"), ("pipeline.jobs", "ClusterUnreachable"),
               ("operators.llm.models", "ModelUnavailable"), ("operators.dataset.tokens", "TokenizerUnavailable"))


class UsageError(Exception):
    """Raised instead of argparse's exit, so every usage problem is reported the same way."""


def is_user_error(err: BaseException) -> bool:
    return isinstance(err, UsageError) or any(
        module in sys.modules and isinstance(err, getattr(sys.modules[module], name)) for module, name in USER_ERRORS)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="tracecot", description="Execution-traced chain-of-thought data for code models.")
    top.add_argument("--version", action="version", version=f"tracecot {__version__}")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="build verified CoT records from a problem set")
    _run_options(run)
    run.add_argument("--address", help="Ray cluster address (default: embedded local Ray)")
    run.add_argument("--dry-run", action="store_true", help="read the input and say what would run, where; run nothing")
    run.add_argument("--allow-empty", action="store_true",
                     help="exit 0 even when input rows were read and no record came out (default: exit 1)")

    submit = sub.add_parser("submit", help="submit a run as a Ray job to a cluster (Ray Jobs API)")
    _run_options(submit)
    submit.add_argument("--address", required=True, help="the cluster's Jobs API, e.g. http://head:8265")
    submit.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    submit.add_argument("--runtime-env", help="YAML runtime_env for the job (e.g. cluster/runtime_env.yaml)")
    for name, text in (("logs", "print a submitted job's log"), ("status", "print a submitted job's status")):
        job = sub.add_parser(name, help=text)
        job.add_argument("job_id")
        job.add_argument("--address", required=True, help="the cluster's Jobs API, e.g. http://head:8265")

    verify = sub.add_parser("verify", help="verify CoT records made elsewhere against real traces")
    verify.add_argument("--input", required=True, help="JSONL/Parquet with code, entry_point, input, output, "
                        "cot, direction (and id), or tracecot records")
    verify.add_argument("--output", required=True, help="output path or s3://bucket/prefix")
    verify.add_argument("--config", help="YAML run config (sandbox, verifier, storage, ray settings)")
    verify.add_argument("--limit", type=int, help="read at most N input rows")
    verify.add_argument("--address", help="Ray cluster address (default: embedded local Ray)")
    verify.add_argument("--allow-empty", action="store_true",
                        help="exit 0 even when input rows were read and no record came out (default: exit 1)")
    _set_option(verify)

    agree = sub.add_parser("agree", help="keep candidate problems (solutions + tests) that execution agrees on")
    agree.add_argument("--input", required=True, help="JSONL/Parquet rows with id, instruction, entry_point, "
                       "solutions (list of code), tests (list of assert statements)")
    synthesize = sub.add_parser("synthesize", help="write new problems with a model; keep those execution agrees on")
    synthesize.add_argument("--input", required=True, help="JSONL/Parquet rows: {id, text} seed texts, {id, concept} "
                            "concepts, or {id, code, entry_point?} bare functions (inputs are found for them)")
    synthesize.add_argument("--narrator", choices=cfg.NARRATORS[1:], help="the model backend, set up as for run's "
                            "model narrators (default: transformers)")
    synthesize.add_argument("--model", help="model id or path (default: smollm2-135m)")
    for command in (agree, synthesize):
        command.add_argument("--trace", action="store_true", help="then trace the kept problems into OUTPUT/traced "
                             "(tracecot run with the template narrator, same config), in the same Ray session")
        command.add_argument("--output", required=True, help="output path or s3://bucket/prefix: problems/ (the "
                             "generic input format, which tracecot run reads), rejected/, runs/")
        command.add_argument("--config", help="YAML config (synth, sandbox, decontam, storage, ray, narrator settings)")
        command.add_argument("--limit", type=int, help="read at most N input rows")
        command.add_argument("--address", help="Ray cluster address (default: embedded local Ray)")
        command.add_argument("--against", help="drop problems that duplicate benchmark items: cruxeval=PATH,… "
                             "(sets decontam.against)")
        command.add_argument("--allow-empty", action="store_true",
                             help="exit 0 even when input rows were read and no problem was kept (default: exit 1)")
        _set_option(command)

    evaluate = sub.add_parser("eval", help="score a model or its generations on a benchmark (in the sandbox)")
    evaluate.add_argument("--bench", required=True, choices=BENCHES)
    evaluate.add_argument("--data", required=True, help="the benchmark's data file (.jsonl, .jsonl.gz, .parquet)")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--generations", help="JSON: sample id -> list of generations (CRUXEval's format)")
    source.add_argument("--model", help="generate with this model (Hugging Face id or folder; 'smollm2-135m')")
    evaluate.add_argument("--backend", choices=("transformers", "vllm", "openai"), default="transformers")
    evaluate.add_argument("--base-url", help="openai backend: the endpoint, e.g. http://127.0.0.1:8000/v1")
    evaluate.add_argument("--n", type=int, default=1, help="generations per item (pass@5 needs 5 or more)")
    evaluate.add_argument("--temperature", type=float, default=0.2)
    evaluate.add_argument("--max-tokens", type=int, default=512)
    style = evaluate.add_mutually_exclusive_group()
    style.add_argument("--cot", dest="cot", action="store_true", help="reason step by step before answering")
    style.add_argument("--direct", dest="cot", action="store_false", help="answer directly (default)")
    evaluate.add_argument("--prompt-format", choices=("cruxeval", "chat"), default="cruxeval")
    evaluate.add_argument("--prompt-template", help="a text file used as the prompt instead, with {code}, {input} "
                          "and {output} placeholders (e.g. CRUXEval's own prompt text)")
    evaluate.add_argument("--limit", type=int, help="evaluate the first N items only")
    evaluate.add_argument("--report", help="write the JSON report here (default: print it)")
    evaluate.add_argument("--items", help="write per-generation results here as Parquet")

    decontam = sub.add_parser("decontam", help="flag or drop records whose code overlaps benchmark items")
    decontam.add_argument("--input", required=True, help="records: a Parquet file or folder, or JSON lines with code")
    decontam.add_argument("--against", required=True, help="cruxeval=PATH,humaneval=PATH,… (or names under "
                          "$TRACECOT_BENCHMARKS: cruxeval, humaneval, mbpp)")
    decontam.add_argument("--output", required=True, help="folder for records.parquet (and flagged.parquet)")
    decontam.add_argument("--drop", action="store_true", help="leave flagged records out of records.parquet")
    decontam.add_argument("--ngram", type=int, default=10)
    decontam.add_argument("--threshold", type=float, default=0.5, help="n-gram overlap that flags a record")

    report = sub.add_parser("report", help="rebuild a run's HTML report from its JSON report")
    report.add_argument("output", help="a tracecot output: path or s3://bucket/prefix")
    report.add_argument("--run", help="run id (default: the latest run in OUTPUT/runs)")

    export = sub.add_parser("export", help="write an output's records as a dataset for training libraries")
    export.add_argument("destination", metavar="DIR", help="folder (or s3://…) to write the dataset to")
    export.add_argument("--format", choices=("hf",), default="hf",
                        help="hf: Parquet splits and a dataset card that datasets.load_dataset(DIR) reads")
    export.add_argument("--input", default=cfg.RunConfig().output,
                        help="the tracecot output to export (default: %(default)s)")
    export.add_argument("--validation-share", type=float, default=0.05,
                        help="share of problems (functions) in the validation split (default: %(default)s)")
    export.add_argument("--max-tokens", type=int, help="leave out records with more tokens (prompt + completion)")
    export.add_argument("--fingerprint", help="export the records of this fingerprint (default: the latest run's; "
                        "'all': every record, whatever config made it)")

    trace = sub.add_parser("trace", help="trace one call in the sandbox and print the trace")
    trace.add_argument("file", help="Python file with the function")
    trace.add_argument("--entry-point", required=True, help="function to call")
    trace.add_argument("--input", required=True, help='argument list, e.g. "[1, 2], 3", or a JSON object')
    trace.add_argument("--timeout", type=float, default=5.0, help="CPU seconds for the call (default: 5)")

    isolation = sub.add_parser("isolation", help="start the sandbox here and print the isolation layers it gets; "
                               "exit 2 if a layer the config requires (sandbox.require) is missing")
    isolation.add_argument("--config", help="YAML config (sandbox settings)")
    _set_option(isolation)
    return top


def _run_options(run: argparse.ArgumentParser) -> None:
    default = cfg.RunConfig()
    run.add_argument("--config", help="YAML run config (see configs/)")
    run.add_argument("--input", help="problem file or folder: path or s3:// URI (default: shipped samples)")
    run.add_argument("--format", choices=cfg.FORMATS, help="input format (default: auto-detect per row)")
    run.add_argument("--output", help="output path or s3://bucket/prefix (default: ./tracecot-out)")
    run.add_argument("--narrator", choices=cfg.NARRATORS, help=f"narrator backend (default: {default.narrator.name})")
    run.add_argument("--model", help="model id or path for model-backed narrators (default: smollm2-135m)")
    run.add_argument("--directions", help=f"comma-separated (default: {','.join(default.directions)})")
    run.add_argument("--limit", type=int, help="read at most N input rows (default: all)")
    run.add_argument("--executors", type=int, help=f"max sandbox executor actors (default: {default.ray.executors})")
    _set_option(run)


def _set_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="set one config key, e.g. --set sandbox.timeout_s=2 --set verifier.strict=false "
                              "(values in YAML; applied after --config, before the flags above)")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        if args.command == "trace":
            return _trace(args)
        if args.command == "isolation":
            return _isolation(args)
        if args.command == "eval":
            return _eval(args)
        if args.command in ("submit", "logs", "status"):
            return _job(args)
        if args.command == "decontam":
            return _decontam(args)
        if args.command == "report":
            return _report(args)
        if args.command == "export":
            return _export(args)
        if args.command in ("agree", "synthesize"):
            return _synthesize(args)
        return _run(args)
    except Exception as err:
        if not is_user_error(err):
            raise
        print(f"tracecot: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # a run handles its own interrupt (pipeline/run.py); this is any other command
        print("tracecot: interrupted", file=sys.stderr)
        return 130


def _config(args: argparse.Namespace) -> cfg.RunConfig:
    flags: dict[str, Any] = {"input": args.input, "output": args.output, "limit": args.limit}
    if args.command != "submit":
        flags["ray.address"] = args.address
    if args.command in ("agree", "synthesize"):
        flags["decontam.against"] = args.against
    if args.command == "synthesize":
        flags.update({"narrator.name": args.narrator or "transformers", "narrator.model": args.model})
    if args.command in ("run", "submit"):
        flags.update({"format": args.format, "directions": args.directions, "narrator.name": args.narrator,
                      "narrator.model": args.model, "ray.executors": args.executors})
    return cfg.load(args.config, flags, _settings(args.set))


def _settings(pairs: list[str]) -> list[tuple[str, Any]]:
    """`--set key=value` pairs, each value read as YAML (`2`, `false`, `[forward]`, `null`)."""
    settings = []
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key.strip():
            raise UsageError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            settings.append((key.strip(), yaml.safe_load(text)))
        except yaml.YAMLError as err:
            raise UsageError(f"--set {key}: the value is not valid YAML: {str(err).splitlines()[0]}") from err
    return settings


def _job(args: argparse.Namespace) -> int:
    """`tracecot submit`, `logs` and `status`: runs as Ray jobs."""
    from pipeline import jobs

    if args.command == "status":
        print(jobs.status(args.address, args.job_id))
        return 0
    if args.command == "logs":
        print(jobs.logs(args.address, args.job_id), end="")
        return 0
    config = _config(args)
    runtime_env = cfg.read_yaml(args.runtime_env) if args.runtime_env else None
    job_id = jobs.submit(args.address, config, runtime_env)
    if args.no_wait:
        print(job_id)
        return 0
    print(f"tracecot: submitted {job_id}; streaming its log (Ctrl-C stops following, not the job)", file=sys.stderr)
    state = jobs.follow(args.address, job_id)
    print(f"tracecot: job {job_id} {state}", file=sys.stderr)
    return jobs.exit_code(state)


def _run(args: argparse.Namespace) -> int:
    """`tracecot run` and `tracecot verify`: the same dataflow, with or without narration."""
    config = _config(args)
    mode = "verify" if args.command == "verify" else "narrate"
    from pipeline.jobs import ClusterUnreachable
    from pipeline.run import plan, run  # imports pyarrow and the stages: keep `tracecot --help` and usage errors fast
    from pipeline.state import count_done
    from pipeline.storage import locate

    if getattr(args, "dry_run", False):
        for line in plan(config, mode):
            print(line)
        return 0
    try:
        report = run(config, mode=mode)
    except ConnectionError as err:
        if not config.ray.address:
            raise
        raise ClusterUnreachable(f"cannot reach the Ray cluster at {config.ray.address}: {err}") from err
    for line in report["summary"]:
        print(line)
    for name in ("records", "rejected", "card", "report", "html", "log"):
        print(f"{name + ':':9} {report['output'][name]}")
    print(f"wall time {report['wall_s']:.1f}s, {report['records_per_s']} records/s")
    funnel = report["funnel"]
    if report["status"] == "interrupted":
        print(f"tracecot: interrupted: the {funnel['written_records']} records and {funnel['written_rejected']} "
              "rejected rows written before the stop are kept; run the same command again to do the rest",
              file=sys.stderr)
        return 130
    if funnel["rows_read"] and not funnel["written_records"] and not args.allow_empty \
            and not count_done(locate(config.output, config.storage), folders=("records",)):
        print(f"tracecot: no records: all {funnel['items']} items of {funnel['rows_read']} input rows were rejected "
              "(see the funnel above and rejected/); --allow-empty makes this exit 0", file=sys.stderr)
        return EXIT_EMPTY
    return 0


def _synthesize(args: argparse.Namespace) -> int:
    """`tracecot agree` and `tracecot synthesize` (with `--trace`, then `tracecot run` on what was kept, in the
    same Ray session)."""
    config = _config(args)
    if args.command == "synthesize" and not config.narrator.is_model:
        raise cfg.ConfigError("synthesize needs a model backend: narrator.name transformers, vllm or openai")
    import ray

    from pipeline import synthesize
    from pipeline.graph import stop_ray
    from pipeline.run import run

    trace = args.trace
    owned = trace and not ray.is_initialized()  # the synthesis run starts Ray and leaves it up for the tracing
    try:
        code = _report_synthesis(args, config, synthesize.run(config, mode=args.command, keep_ray=trace))
        if code or not trace or not synthesize.holds_problems(config):
            return code
        traced = synthesize.tracing_config(config)
        print(f"tracecot: tracing the kept problems into {traced.output}", file=sys.stderr)
        for line in run(traced)["summary"]:
            print(line)
        return 0
    finally:
        if owned and ray.is_initialized():
            stop_ray()


def _report_synthesis(args: argparse.Namespace, config: cfg.RunConfig, report: dict) -> int:
    """Print what a synthesis run did; its exit code (an interrupted run, or nothing kept, is not 0)."""
    from pipeline import synthesize

    for line in report["summary"]:
        print(line)
    for name in ("problems", "rejected", "report", "html", "log"):
        print(f"{name + ':':9} {report['output'][name]}")
    funnel = report["funnel"]
    print(f"wall time {report['wall_s']:.1f}s, {funnel['written_records']} problems kept")
    if report["status"] == "interrupted":
        print(f"tracecot: interrupted: the {funnel['written_records']} problems and {funnel['written_rejected']} "
              "rejected rows written before the stop are kept; run the same command again to do the rest",
              file=sys.stderr)
        return 130
    if funnel["rows_read"] and not args.allow_empty and not synthesize.holds_problems(config):
        print(f"tracecot: no problems: every one of {funnel['items']} items was rejected (see the funnel above "
              "and rejected/); --allow-empty makes this exit 0", file=sys.stderr)
        return EXIT_EMPTY
    return 0


def _eval(args: argparse.Namespace) -> int:
    from pipeline import evaluate
    from pipeline.storage import locate

    if args.generations:
        if args.prompt_template:
            raise UsageError("--prompt-template is for generating (--model); --generations are scored as they are")
        report, items = evaluate.score(args.bench, args.data, args.generations)
    else:
        report, items = _generate_and_score(args)
    if args.items:
        evaluate.write_items(items, args.items)
    text = json.dumps({k: v for k, v in report.items() if k != "per_sample"}, indent=2)
    if args.report:
        locate(args.report).write_bytes(json.dumps(report, indent=2).encode())
    print(text)
    return 0


def _generate_and_score(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from operators.llm.backends import Sampling
    from pipeline import evaluate

    if args.n < 1 or args.max_tokens < 1 or args.temperature < 0 or (args.limit is not None and args.limit < 1):
        raise UsageError("--n, --max-tokens and --limit must be positive, --temperature 0 or more")
    if args.backend == "openai" and not args.base_url:
        raise UsageError("--backend openai needs --base-url")
    template = _prompt_template(args.prompt_template) if args.prompt_template else None
    data = evaluate.load_benchmark(args.bench, args.data)
    data = dict(list(data.items())[: args.limit]) if args.limit else data
    options = {"base_url": args.base_url} if args.backend == "openai" else {}
    sampling = Sampling(max_tokens=args.max_tokens, temperature=args.temperature)
    started = time.perf_counter()
    answers = evaluate.generate(args.bench, data, args.backend, args.model, args.n, sampling, args.cot,
                                args.prompt_format, options, template)
    generation_s = time.perf_counter() - started
    report, items = evaluate.score_generations(args.bench, data, evaluate.predictions(args.bench, answers))
    for item in items:
        item["answer"] = answers[item["sample_id"]][item["index"]]
    if args.cot and args.bench in ("cruxeval-o", "lcb-exec"):
        report.update(evaluate.faithfulness(data, answers, report["per_sample"]))
    report.update(data=args.data, model=args.model, backend=args.backend, generation_s=round(generation_s, 2))
    report["settings"].update(n=args.n, temperature=args.temperature, max_tokens=args.max_tokens, cot=args.cot,
                              prompt_format=args.prompt_format, limit=args.limit)
    if template is not None:
        report["settings"].update(prompt_format="template", prompt_template=args.prompt_template,
                                  prompt_template_sha256=hashlib.sha256(template.encode()).hexdigest())
    return report, items


def _prompt_template(path: str) -> str:
    from operators.eval.prompts import check_template
    from pipeline.storage import locate

    try:
        template = locate(path).read_bytes().decode()
        check_template(template)
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read the prompt template {path}: {getattr(err, 'strerror', None) or err}") from err
    except ValueError as err:
        raise UsageError(f"{path}: {err}") from err
    return template


def _decontam(args: argparse.Namespace) -> int:
    from pipeline.decontaminate import decontaminate

    report = decontaminate(args.input, args.against, args.output, args.drop, args.ngram, args.threshold)
    print(json.dumps(report, indent=2))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pipeline.html_report import write_html
    from pipeline.report import read_report
    from pipeline.storage import locate

    output = locate(args.output)
    report = read_report(output, args.run)
    write_html(output, report["run_id"], report)
    print(output.uri_of("runs", f"{report['run_id']}.html"))
    return 0


def _export(args: argparse.Namespace) -> int:
    from pipeline.export import export_hf

    if args.max_tokens is not None and args.max_tokens < 1:
        raise UsageError("--max-tokens must be at least 1")
    if not args.destination.strip():
        raise UsageError("the export's DIR must be a path or s3:// URI, not empty")
    print(json.dumps(export_hf(args.input, args.destination, args.validation_share, args.max_tokens,
                               args.fingerprint), indent=2))
    return 0


def _isolation(args: argparse.Namespace) -> int:
    """The sandbox's own check, as every run makes it before running anything: a cluster node can make it at start."""
    from operators.sandbox.client import Sandbox
    from pipeline.stages import limits

    config = cfg.load(args.config, {}, _settings(args.set))
    with Sandbox(limits(config), tuple(config.sandbox.require)) as sandbox:
        for layer, active in sandbox.isolation.items():
            required = "required" if layer in config.sandbox.require else ""
            print(f"{layer:18} {'yes' if active else 'no':5}{required}".rstrip())
    return 0


def _trace(args: argparse.Namespace) -> int:
    from operators.sandbox.calls import input_text
    from operators.sandbox.client import Limits, Sandbox
    from pipeline.sources import InputError
    from pipeline.storage import locate

    try:
        code = locate(args.file).read_bytes().decode()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read {args.file}: {getattr(err, 'strerror', None) or err}") from err
    raw: Any = args.input
    if raw.lstrip().startswith("{"):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as err:
            raise InputError(f"--input looks like a JSON object but is not one: {err.msg}") from err
    job = {"code": code, "entry_point": args.entry_point, "input": input_text(raw)}
    with Sandbox(Limits(timeout_s=args.timeout), require=()) as sandbox:
        result = sandbox.run(job)
    for event in result.pop("trace", []):
        print(json.dumps(event))
    print(json.dumps({k: v for k, v in result.items() if k != "stdout"}), file=sys.stderr)
    return 0 if result["outcome"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
