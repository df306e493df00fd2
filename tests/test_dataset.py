"""The dataset as its users receive it: training columns, the dataset card, the HF export (read by `datasets` and
trained on with TRL), the HTML run report in a real browser, and the CLI around them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import SAMPLES
from helpers import read, run_job

from operators.dataset import tokens
from operators.stages.export import TrainingColumns
from pipeline import config as cfg
from pipeline.cli import main
from pipeline.export import split_of

TRACECOT = str(Path(sys.executable).parent / "tracecot")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def tracecot(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([TRACECOT, *args], capture_output=True, text=True, cwd=cwd, timeout=240)


def _row(prompt: str, cot: str) -> dict:
    return {"record_id": "r", "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": cot}]}


def test_training_columns_split_messages_and_count_tokens_with_the_bundled_tokenizer():
    stage = TrainingColumns(tokens.BUNDLED)
    prompt, cot = "What does `f(3)` return?", "Line 2: `x` becomes `4`.\n[ANSWER]assert f(3) == 4[/ANSWER]"
    (row,) = stage(pa.Table.from_pylist([_row(prompt, cot)])).to_pylist()
    assert (row["prompt"], row["completion"]) == (prompt, cot)
    tokenizer = tokens.load(tokens.BUNDLED)
    expected = [len(tokenizer.encode(text, add_special_tokens=False).ids) for text in (prompt, cot)]
    assert row["n_tokens"] == sum(expected) and row["n_completion_tokens"] == expected[1]
    assert row["reason"] is None


def test_records_over_max_tokens_are_rejected_as_too_long_not_cut():
    stage = TrainingColumns(tokens.BUNDLED, max_tokens=40)
    short, long = _row("f(1)?", "[ANSWER]assert f(1) == 1[/ANSWER]"), _row("f(2)?", "word " * 50)
    rows = stage(pa.Table.from_pylist([short, long])).to_pylist()
    assert rows[0]["reason"] is None
    assert (rows[1]["stage"], rows[1]["reason"]) == ("export", "too_long") and "> export.max_tokens 40" in \
        rows[1]["message"]
    assert rows[1]["completion"] == "word " * 50  # the rejected row keeps its whole text


def test_the_tokenizer_is_part_of_the_fingerprint():
    default = cfg.load(None, {})
    assert default.tokenizer == tokens.BUNDLED
    # The student's tokenizer counts, not the narrator's (which may live only on GPU nodes)
    assert cfg.load(None, {"narrator.name": "transformers", "narrator.model": "/models/m"}).tokenizer == tokens.BUNDLED
    assert cfg.load(None, {"export.tokenizer": "/models/m"}).fingerprint() != default.fingerprint()
    assert cfg.load(None, {"export.max_tokens": 1024}).fingerprint() != default.fingerprint()
    with pytest.raises(tokens.TokenizerUnavailable, match="no tokenizer at"):
        tokens.load("/no/such/tokenizer/folder/")
    with pytest.raises(tokens.TokenizerUnavailable, match="cannot load the tokenizer"):
        tokens.load("/etc/hostname")  # a file that is not a tokenizer


def test_a_function_is_on_one_side_of_the_split_only():
    sides = {split_of(f"def f(x):\n    return x + {n}\n", "f", 0.3) for n in range(200)}
    assert sides == {"train", "validation"}
    assert split_of("def g(): pass", "g", 0.3) == split_of("def g(): pass", "g", 0.3)
    assert split_of("def g(): pass", "g", 0.0) == "train"


def test_set_overrides_config_keys_and_flags_win(capsys):
    from pipeline.cli import _config, parser

    args = parser().parse_args(["run", "--set", "sandbox.timeout_s=2", "--set", "verifier.strict=false",
                                "--set", "directions=[backward]", "--set", "limit=5", "--limit", "3"])
    config = _config(args)
    assert (config.sandbox.timeout_s, config.verifier.strict, config.directions, config.limit) == (
        2.0, False, ["backward"], 3)
    for bad, needle in ((["--set", "nokey"], "KEY=VALUE"), (["--set", "colour=blue"], "unknown config key colour"),
                        (["--set", "sandbox.timeout_s=[1"], "not valid YAML")):
        assert main(["run", *bad]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], lines


def test_set_null_resets_a_key_the_config_file_set(tmp_path):
    from pipeline.cli import _config, parser

    config_file = tmp_path / "run.yaml"
    config_file.write_text("export:\n  max_tokens: 1024\nnarrator:\n  model: some/model\n")
    args = parser().parse_args(["run", "--config", str(config_file), "--set", "export.max_tokens=null",
                                "--set", "narrator.model=null"])
    config = _config(args)
    assert config.export.max_tokens is None and config.narrator.model is None


@pytest.mark.parametrize(("argv", "needle"), [
    (["run", "--output", ""], "not empty"),
    (["run", "--directions", "forward,forward"], "a direction twice"),
    (["run", "--set", "sandbox.require=[[x]]"], "must be a list of names"),
    (["run", "--dry-run", "--set", "export.tokenizer=/no/such/tokenizer"], "no tokenizer at /no/such/tokenizer"),
    (["export", ""], "not empty"),
    (["report", "/no/such/output"], "no run reports"),
    (["verify", "--input", "x.jsonl", "--output", "o", "--allow-empty", "--set", "limit=0"], "limit must be"),
])
def test_more_usage_errors_exit_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines


def test_bad_run_reports_are_a_clear_error(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    for text, needle in (("{}", "not a tracecot run report"), ("[1]", "not a tracecot run report"),
                         ("oops", "is not JSON")):
        (runs / "x.json").write_text(text)
        assert main(["report", str(tmp_path)]) == 2
        assert needle in capsys.readouterr().err


def test_the_card_escapes_what_the_data_says_and_leaves_a_users_readme_alone(tmp_path):
    from huggingface_hub import DatasetCard

    from pipeline.card import Contents, card_text, write_card
    from pipeline.storage import locate

    contents = Contents()
    contents.records.update({"forward": 2})
    contents.sources.update({("a|b `x`.jsonl", "MIT\n---\nfoo: bar\n# heading"): 1, ("c.jsonl", "<script>"): 1})
    report = {"tokenizer": "t", "versions": {"tracecot": "0"}, "run_id": "r", "started": "s", "status": "finished",
              "fingerprint": "f", "config": {"a": 1}}
    text = card_text({"train": "records/*.parquet"}, {"train": contents.records}, contents, report)
    (tmp_path / "README.md").write_text(text)
    card = DatasetCard.load(tmp_path / "README.md")
    assert card.data.license == "other"
    rows = [line for line in card.text.splitlines() if line.startswith("| ") and ".jsonl" in line]
    assert len(rows) == 2 and all(line.count(" | ") == 2 for line in rows)  # three cells each, pipes escaped
    assert "<script>" not in card.text and "\n# heading" not in card.text
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("# my project\n")
    assert "not written by tracecot" in write_card(locate(str(mine)), report)
    assert (mine / "README.md").read_text() == "# my project\n"


def test_help_and_version_do_not_import_ray():
    code = ("import sys, contextlib, io\nfrom pipeline.cli import main\n"
            "for argv in (['--version'], ['run', '--help'], ['export', '--help']):\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "        main(argv)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'pyarrow', 'torch', 'matplotlib')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
    version = tracecot("--version")
    assert version.returncode == 0 and version.stdout.startswith("tracecot ")
    help_text = tracecot("run", "--help").stdout
    assert "default: forward,backward" in help_text and "default: 2" in help_text and "--dry-run" in help_text


def test_dry_run_says_what_would_run_and_writes_nothing(tmp_path):
    result = tracecot("run", "--dry-run", "--limit", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "rows:     5 → " in out and "to run:" in out and "this process, without Ray" in out  # a small input
    assert "Executor" in out and "ParquetSink" in out and "tracecot-out" in out
    assert not (tmp_path / "tracecot-out").exists()
    assert "Traceback" not in result.stderr
    on_ray = tracecot("run", "--dry-run", "--limit", "5", "--set", "ray.engine=ray", cwd=tmp_path)
    assert on_ray.returncode == 0 and "embedded local Ray" in on_ray.stdout, on_ray.stderr


@pytest.fixture(scope="module")
def output(local_ray, tmp_path_factory) -> Path:
    """A real run over the shipped samples (template narrator), shared by the tests below."""
    out = tmp_path_factory.mktemp("dataset") / "out"
    report = run_job(input=str(SAMPLES), output=str(out))
    assert report["funnel"]["written_records"] > 100
    return out


def test_records_carry_training_columns_and_the_card_describes_the_output(output):
    records = read(output, "records").to_pylist()
    for record in records:
        assert record["prompt"] == record["messages"][0]["content"]
        assert record["completion"] == record["messages"][1]["content"] == record["cot"]
        assert record["n_tokens"] > record["n_completion_tokens"] > 0
        assert record["license"] == "apache-2.0"
    card = (output / "README.md").read_text()
    forward = sum(r["direction"] == "forward" for r in records)
    assert f"| train | {len(records) - forward} | {forward} | {len(records)} |" in card
    assert "license: apache-2.0" in card and "records/*.parquet" in card
    report = json.loads(sorted((output / "runs").glob("*.json"))[-1].read_text())
    assert report["fingerprint"] in card
    assert sum(report["lengths"]["n_tokens"].values()) == len(records)


def test_hf_export_loads_with_datasets_split_by_problem(output, tmp_path):
    datasets = pytest.importorskip("datasets")
    destination = tmp_path / "hf"
    assert main(["export", str(destination), "--input", str(output), "--validation-share", "0.3"]) == 0
    loaded = datasets.load_dataset(str(destination))
    assert set(loaded) == {"train", "validation"}
    assert loaded["train"].num_rows + loaded["validation"].num_rows == read(output, "records").num_rows
    train_problems = set(zip(loaded["train"]["code"], loaded["train"]["entry_point"], strict=True))
    validation_problems = set(zip(loaded["validation"]["code"], loaded["validation"]["entry_point"], strict=True))
    assert train_problems and validation_problems and not train_problems & validation_problems
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(destination / "README.md")
    assert card.data.license == "apache-2.0"
    assert {entry["split"] for entry in card.data.configs[0]["data_files"]} == {"train", "validation"}
    assert "| validation | " in card.text


def test_hf_export_refuses_a_folder_inside_the_output_or_with_a_users_readme(output, tmp_path):
    assert main(["export", str(output / "records" / "x"), "--input", str(output)]) == 2
    (tmp_path / "README.md").write_text("# mine\n")
    assert main(["export", str(tmp_path), "--input", str(output)]) == 2
    assert (tmp_path / "README.md").read_text() == "# mine\n" and not (tmp_path / "data").exists()


def test_hf_export_max_tokens_leaves_out_long_records(output, tmp_path):
    lengths = read(output, "records").column("n_tokens").to_pylist()
    limit = sorted(lengths)[len(lengths) // 2]
    assert main(["export", str(tmp_path / "short"), "--input", str(output), "--validation-share", "0.5"]) == 0
    assert main(["export", str(tmp_path / "short"), "--input", str(output), "--max-tokens", str(limit)]) == 0
    kept = read_export(tmp_path / "short")  # the first export's larger files are gone, not read twice
    assert kept.num_rows == sum(n <= limit for n in lengths)
    assert max(kept.column("n_tokens").to_pylist()) <= limit
    assert main(["export", str(tmp_path / "none"), "--input", str(output), "--fingerprint", "0" * 16]) == 2


def read_export(folder: Path) -> pa.Table:
    import pyarrow.dataset as pads

    return pads.dataset(folder / "data", format="parquet").to_table()


@pytest.mark.timeout(1500)  # two CPU training steps: past 600 s once on a slow hour of this shared machine
def test_sft_with_trl_on_the_export_masks_the_prompt(output, smollm2, tmp_path):
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    from transformers import AutoTokenizer

    assert main(["export", str(tmp_path / "hf"), "--input", str(output), "--max-tokens", "700"]) == 0
    train = datasets.load_dataset(str(tmp_path / "hf"))["train"].select_columns(["prompt", "completion"])
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    settings = trl.SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=2, per_device_train_batch_size=2,
                             learning_rate=1e-4, logging_steps=1, report_to=[], save_strategy="no",
                             use_cpu=True, dataloader_num_workers=0, max_length=1024)
    trainer = trl.SFTTrainer(model=smollm2, args=settings, train_dataset=train, processing_class=tokenizer)
    labels = trainer.train_dataset[0]["labels"]
    prompt_tokens = tokens.count(tokens.load(tokens.BUNDLED), [train[0]["prompt"]])[0]
    assert set(labels[:prompt_tokens]) == {-100}  # the prompt carries no loss: exactly its counted tokens
    assert -100 not in labels[prompt_tokens:]  # the whole completion does, [ANSWER] block included
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert (batch["labels"] == -100).any() and (batch["labels"] != -100).any()
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss == result.training_loss  # ran, and the loss is a number


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="needs Debian's chromium (CI installs it)")
def test_the_html_report_shows_its_charts_in_headless_chromium(output, tmp_path):
    from playwright.sync_api import sync_playwright

    page_file = sorted((output / "runs").glob("*.html"))[-1]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_file.as_uri())
            charts = page.locator("figure.chart svg")
            visible = [charts.nth(i).bounding_box() for i in range(charts.count()) if charts.nth(i).is_visible()]
            drawn = page.evaluate("() => [...document.querySelectorAll('figure.chart svg')]"
                                  ".map(svg => svg.querySelectorAll('path, rect, use').length)")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert len(visible) >= 4 and all(box["width"] > 300 and box["height"] > 150 for box in visible)
    assert all(n > 20 for n in drawn), drawn  # every chart has drawn marks, not an empty frame
    assert requests == [page_file.as_uri()]  # self-contained: nothing else is fetched
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_report_command_rebuilds_the_page(output):
    page = sorted((output / "runs").glob("*.html"))[-1]
    page.unlink()
    assert main(["report", str(output)]) == 0
    assert page.exists() and page.read_text().count('<figure class="chart"') == 7
    assert main(["report", str(output), "--run", "nope"]) == 2


@pytest.mark.integration
def test_a_run_with_every_row_rejected_exits_1_and_so_does_its_rerun(tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b'{"id": "a", "code": "def f(:", "entry_point": "f", "inputs": ["1"]}\nnot json\n'
                       b'{"id": "b", "code": "s = \'\xff\'", "entry_point": "f", "inputs": ["1"]}\n')
    for _ in range(2):  # the rerun finds every item done, and still no record
        result = tracecot("run", "--input", str(source), "--output", str(tmp_path / "out"), cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("tracecot: no records: all 3 items")
    reasons = read(tmp_path / "out", "rejected").column("reason").to_pylist()
    assert sorted(reasons) == ["malformed_json", "not_utf8", "syntax_error"]  # a line that is not UTF-8 is one row
    allowed = tracecot("run", "--input", str(source), "--output", str(tmp_path / "out2"), "--allow-empty",
                       cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
