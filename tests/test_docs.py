"""The metrics catalogue (docs/metrics.md) names exactly the metrics the code exposes, and the
operations guide names only settings, alerts and metrics that exist."""

import re
from pathlib import Path

import pytest
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


def test_the_design_module_list_names_every_module():
    from tests.test_layout import MODULES, PACKAGES

    design = (CATALOGUE.parents[1] / "docs" / "design.md").read_text()
    layout = design[design.index("## Modules") :]
    named = re.findall(r"`((?:[a-z_]+/)+[a-z_]+\.py)`", layout)
    listed = {n for n in named if n.split("/")[0] in PACKAGES and not n.endswith("__init__.py")}
    files = {
        str(path.relative_to(CATALOGUE.parents[1]))
        for path in MODULES.values()
        if path.name not in ("__init__.py", "__main__.py")
    }
    assert files - listed == set(), "modules missing from docs/design.md's module list"
    assert listed - files == set(), "docs/design.md's module list names modules that do not exist"


def test_the_design_layout_names_every_package_and_group():
    from tests.test_layout import PACKAGES

    design = (CATALOGUE.parents[1] / "docs" / "design.md").read_text()
    layout = design[design.index("## Layout") : design.index("## Where state lives")]
    groups = [p.parent.name for p in (CATALOGUE.parents[1] / "bandit").glob("*/__init__.py")]
    missing = [f"{p}/" for p in PACKAGES if f"{p}/" not in layout]
    missing += [f"{g}/" for g in groups if f"  {g}/" not in layout]
    assert not missing, f"docs/design.md's layout misses {missing}"


DOCS = [CATALOGUE.parents[1] / "README.md", *sorted(CATALOGUE.parent.glob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_link_resolves_inside_the_repository_or_is_public(doc):
    """No link leaves the repository except to a public site, and none is broken: a guide
    read on GitHub or in a clone has every page and file it points at."""
    root = CATALOGUE.parents[1]
    text = doc.read_text()
    for target in _LINK.findall(text):
        if target.startswith(("https://", "http://")):
            assert "localhost" not in target and "127.0.0.1" not in target, target
            continue
        path, _, anchor = target.partition("#")
        resolved = (doc.parent / path).resolve() if path else doc
        assert resolved.exists(), f"{doc.name}: {target} does not exist"
        assert resolved.is_relative_to(root), f"{doc.name}: {target} leaves the repository"
        if anchor and resolved.suffix == ".md":
            headings = {_anchor(h) for h in re.findall(r"^#+ (.+)$", resolved.read_text(), re.M)}
            assert anchor in headings, f"{doc.name}: no heading #{anchor} in {path or doc.name}"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_readme_is_short_and_maps_every_guide():
    readme = (CATALOGUE.parents[1] / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for guide in ("frontend", "data-science", "operations", "design", "quality"):
        assert f"(docs/{guide}.md)" in readme
