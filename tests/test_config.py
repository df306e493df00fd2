from pathlib import Path

import pytest

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
])
def test_bad_values_are_refused(overrides, needle):
    with pytest.raises(cfg.ConfigError, match=needle):
        cfg.load(None, overrides)
