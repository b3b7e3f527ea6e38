"""The metrics catalogue (docs/metrics.md) names exactly the metrics the code exposes."""

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from bandit.learner.metrics import LearnerMetrics
from serving.metrics import ServingMetrics

CATALOGUE = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def _exposed(metrics_class) -> set[str]:
    registry = CollectorRegistry()
    metrics_class(registry)
    return {
        family.name + ("_total" if family.type == "counter" else "")
        for family in registry.collect()
    }


def test_the_catalogue_lists_every_metric_and_only_those():
    listed = re.findall(r"^\| `(artbandit_[a-z_]+)` \|", CATALOGUE.read_text(), re.MULTILINE)
    assert len(listed) == len(set(listed))
    assert set(listed) == _exposed(ServingMetrics) | _exposed(LearnerMetrics)
