import dataclasses
from pathlib import Path

import pytest
import yaml

from pipeline import config as cfg

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path):
    assert cfg.load(str(path), {}).output


def test_overrides_and_fingerprint():
    base = cfg.load(None, {})
    assert base.input == cfg.SAMPLE_INPUT and base.directions == ["forward", "backward"]
    changed = cfg.load(None, {"verifier.min_coverage": 0.9, "directions": "forward", "output": "s3://b/p"})
    assert changed.directions == ["forward"] and changed.output == "s3://b/p"
    assert changed.fingerprint() != base.fingerprint()
    assert cfg.load(None, {"output": "elsewhere", "limit": 3}).fingerprint() == base.fingerprint()


@pytest.mark.parametrize(("overrides", "needle"), [
    ({"sandbox.require": "network_namespace,teleport"}, "unknown sandbox layer"),
    ({"verifier.min_coverage": 2.0}, "between 0 and 1"),
    ({"ray.executors": 0}, "at least 1"),
    ({"ingest.shards": 0}, "ingest.shards must be at least 1"),
    ({"ray.min_executors": 3}, "ray.min_executors must be between 1 and ray.executors"),
    ({"sink.rows_per_file": 0}, "sink.rows_per_file must be at least 1"),
    ({"limit": "abc"}, "limit must be int"),  # fields whose default is None are checked too
    ({"ray.address": 5}, "ray.address must be str"),
    ({"ray.engine": "spark"}, "ray.engine must be one of auto, ray, in-process"),
    ({"ray.engine": "in-process", "ray.address": "auto"}, "cannot join the cluster"),
])
def test_bad_values_are_refused(overrides, needle):
    with pytest.raises(cfg.ConfigError, match=needle):
        cfg.load(None, overrides)


def test_the_default_config_file_lists_every_key_with_its_default():
    path = next(p for p in CONFIGS if p.name == "default.yaml")
    written = yaml.safe_load(path.read_text())

    def keys(data, prefix=""):
        return {k for name, value in data.items()
                for k in (keys(value, f"{prefix}{name}.") if isinstance(value, dict) else {prefix + name})}

    assert keys(written) == keys(dataclasses.asdict(cfg.RunConfig()))
    assert cfg.load(str(path), {}) == cfg.load(None, {})
