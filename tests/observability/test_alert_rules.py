"""docs/prometheus-alerts.yaml: the seed's rules verbatim, every metric it uses is exposed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scr_middleware.observability import BufferState, MetricsBridge
from scr_middleware.router.stats import DROP_BUFFER_OVERFLOW, DestinationStats, RuntimeStats

from .helpers import parse_samples

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RULES_FILE = REPO / "docs" / "prometheus-alerts.yaml"

SEED_RULES = """\
groups:
  - name: scr_alerts
    rules:
      - alert: SCRHighLatency
        expr: scr_capture_latency_ms{quantile="0.99"} > 50
        for: 5m
        annotations:
          summary: "Session completion runtime p99 latency > 50ms"

      - alert: SCRRoutingFailures
        expr: rate(scr_routing_failures_total[5m]) > 0.01
        for: 2m
        annotations:
          summary: "Session completion routing failure rate > 1%"

      - alert: SCRServiceDown
        expr: up{job="session-completion-runtime"} == 0
        for: 1m
        annotations:
          summary: "Session completion runtime service is down"
"""

# PromQL words that look like metric names but are not.
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
PROMETHEUS_OWN = {"up"}  # synthesised by Prometheus per scrape target


def load() -> dict[str, Any]:
    data = yaml.safe_load(RULES_FILE.read_text())
    assert isinstance(data, dict)
    return data


def rules() -> list[dict[str, Any]]:
    return [rule for group in load()["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)  # label matchers, ranges
    expr = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:ms|[smhdwy])?\b", "", expr)  # numbers
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        rest = expr[match.end() :].lstrip()
        if match.group() in PROMQL_WORDS or rest.startswith("("):  # function call
            continue
        names.add(match.group())
    return names


def exposed_sample_names() -> set[str]:
    runtime = RuntimeStats(captured=3, invalid=1)
    runtime.extraction_failed("no_usage")
    dest = DestinationStats("billing", captured=3, delivered=1, dead_lettered_total=1)
    dest.drop(DROP_BUFFER_OVERFLOW)
    dest.observe_latency(5.0)
    bridge = MetricsBridge()
    bridge.sync(runtime, [dest], BufferState(1, 100, 10))
    return {name for name, _ in parse_samples(bridge.render()[0].decode())}


def test_file_contains_the_seed_rules_verbatim() -> None:
    text = RULES_FILE.read_text()
    assert SEED_RULES in text
    seed_group = yaml.safe_load(SEED_RULES)["groups"][0]
    assert load()["groups"][0] == seed_group


def test_rules_are_well_formed() -> None:
    all_rules = rules()
    names = [rule["alert"] for rule in all_rules]
    assert len(names) == len(set(names))
    assert {"SCREventsDropped", "SCRDeadLettersGrowing", "SCRDestinationDown"} <= set(names)
    assert {"SCRExtractionFailures", "SCRBufferNearlyFull"} <= set(names)
    for rule in all_rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]


def test_expression_parser_finds_names() -> None:
    found = metric_names(
        'histogram_quantile(0.99, sum by (destination, le) (rate(a_bucket{x="y"}[5m]))) > 1'
        " and on(job) b_total offset 5m > 1e-9"
    )
    assert found == {"a_bucket", "b_total"}


def test_every_metric_in_every_rule_is_exposed() -> None:
    exposed = exposed_sample_names()
    for rule in rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        missing = names - exposed - PROMETHEUS_OWN
        assert not missing, f"{rule['alert']} uses {missing}, not exposed"


def _promtool() -> str:
    """promtool from PATH, or the copy `make test` unpacks into .tools/ (best effort)."""
    found = shutil.which("promtool") or str(REPO / ".tools" / "promtool")
    if not Path(found).is_file():
        pytest.skip("promtool not available (make .tools/promtool)")
    return found


def test_promtool_accepts_the_file() -> None:
    done = subprocess.run(
        [_promtool(), "check", "rules", str(RULES_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_fire_on_the_exposed_series() -> None:
    """promtool's rule unit tests: the seed's rules and the loss rules fire (and stay quiet)
    on series with the names and labels this package exposes."""
    done = subprocess.run(
        [_promtool(), "test", "rules", str(HERE / "alerts_test.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
