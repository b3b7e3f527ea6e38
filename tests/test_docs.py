"""The metrics catalogue (docs/metrics.md) names exactly the metrics the code exposes, and the
operations guide names only settings, alerts and metrics that exist."""

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from learner.metrics import LearnerMetrics
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


OPERATIONS = CATALOGUE.with_name("operations.md")


def test_the_operations_guide_names_only_real_settings_alerts_and_metrics():
    import msgspec

    from bandit.config import Config

    text = OPERATIONS.read_text()
    settings = msgspec.to_builtins(Config())
    named = set(re.findall(r"`((?:serving|learner|kafka|model_store)\.[a-z_.]+)`", text))
    assert named, "the guide names no settings"
    for dotted in named:
        value = settings
        for part in dotted.split("."):
            assert isinstance(value, dict) and part in value, f"{dotted} is not a setting"
            value = value[part]
    alerts = set(re.findall(r"alert: (\w+)", (CATALOGUE.parents[1] / "configs/prometheus/alerts.yml")
                            .read_text()))  # fmt: skip
    assert set(re.findall(r"`(Artbandit\w+)`", text)) <= alerts
    metrics = set(re.findall(r"`(artbandit_\w+)", text))
    assert metrics and metrics <= _exposed(ServingMetrics) | _exposed(LearnerMetrics)


def test_the_readme_layout_lists_every_module():
    from tests.test_layout import MODULES, PACKAGES

    readme = (CATALOGUE.parents[1] / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    named = re.findall(r"`((?:[a-z_]+/)+[a-z_]+\.py)`", layout)
    listed = {n for n in named if n.split("/")[0] in PACKAGES and not n.endswith("__init__.py")}
    files = {
        str(path.relative_to(CATALOGUE.parents[1]))
        for path in MODULES.values()
        if path.name not in ("__init__.py", "__main__.py")
    }
    assert files - listed == set(), "modules missing from the README layout"
    assert listed - files == set(), "the README layout names modules that do not exist"


def test_the_design_layout_names_every_package_and_group():
    from tests.test_layout import PACKAGES

    design = (CATALOGUE.parents[1] / "docs" / "design.md").read_text()
    layout = design[design.index("## Layout") : design.index("## Where state lives")]
    groups = [p.parent.name for p in (CATALOGUE.parents[1] / "bandit").glob("*/__init__.py")]
    missing = [f"{p}/" for p in PACKAGES if f"{p}/" not in layout]
    missing += [f"{g}/" for g in groups if f"  {g}/" not in layout]
    assert not missing, f"docs/design.md's layout misses {missing}"
