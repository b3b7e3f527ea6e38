"""`artbandit replay` from a real log file: the table, the JSON and the HTML report; clear
refusals for logs and targets it cannot evaluate."""

import json

from bandit.contracts.events import RewardedEvent
from bandit.contracts.slots import SlotKind
from replay.logs import write_log
from tests.replay.conftest import uniform_log
from tests.test_cli import run


def test_replay_writes_a_table_json_and_html_from_a_parquet_log(tmp_path, artwork_log):
    log = tmp_path / "log.parquet"
    write_log(log, artwork_log + uniform_log(SlotKind.ROWS, 600, slot="rows"))
    out = tmp_path / "out"
    result = run(
        "replay", "--log", str(log), "--policy", "uniform", "--policy", "default",
        "--policy", "learn:exploration.epsilon=0.1", "--segment", "user.taste", "--rejection",
        "--bootstrap", "50", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "slot artwork: 3,000 events" in result.stdout
    assert "learn:exploration.epsilon=0.1" in result.stdout and "rejection" in result.stdout
    report = json.loads((out / "report.json").read_text())
    artwork = next(s for s in report["slots"] if s["slot"] == "artwork")
    learned = next(t for t in artwork["targets"] if t["target"].startswith("learn:"))
    uniform = next(t for t in artwork["targets"] if t["target"] == "uniform")
    names = [e["estimator"] for e in learned["estimates"]]
    assert names == ["ips", "clipped_ips", "snips", "dm", "dr", "sndr", "switch_dr"]
    snips = {t["target"]: t["estimates"][2]["value"] for t in artwork["targets"]}
    assert snips[learned["target"]] > 1.5 * snips["uniform"]
    assert set(uniform["segments"]) == {"romance", "action", "comedy", "documentary"}
    rows = next(s for s in report["slots"] if s["slot"] == "rows")
    assert {t["position"] for t in rows["targets"]} == {0, 1, 2}
    html = (out / "report.html").read_text()
    assert html.count("<img") >= 4 and "data:image/png;base64," in html
    assert "alt='page values'" in html and "alt='segments'" in html


def test_replay_refuses_what_it_cannot_evaluate(tmp_path, artwork_log):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = run("replay", "--log", str(empty), "--out", str(tmp_path), "--quiet")
    assert result.returncode == 2 and "no events" in result.stderr

    log = tmp_path / "log.jsonl"
    write_log(log, artwork_log[:200])
    result = run("replay", "--log", str(log), "--policy", "best", "--out", str(tmp_path))
    assert result.returncode == 2 and "unknown target" in result.stderr

    skewed = [_with_propensity(e, 0.5) for e in artwork_log[:200]]
    write_log(log, skewed)
    result = run("replay", "--log", str(log), "--rejection", "--out", str(tmp_path), "--quiet")
    assert result.returncode == 2 and "uniformly logged" in result.stderr

    result = run("replay", "--log", str(log), "--estimators", "ips,magic", "--out", str(tmp_path))
    assert result.returncode == 2 and "--estimators" in result.stderr


def _with_propensity(event: RewardedEvent, probability: float) -> RewardedEvent:
    import msgspec

    return msgspec.structs.replace(event, probabilities=[probability])


def test_search_ranks_a_grid_of_learning_configs(tmp_path, artwork_log):
    log = tmp_path / "log.jsonl"
    write_log(log, artwork_log[:600])
    result = run("replay", "--log", str(log), "--search", "--bootstrap", "0", "--no-reward-model",
                 "--estimators", "snips", "--out", str(tmp_path), "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    ranking = result.stdout.split("search (artwork), best SNIPS first:")[1].splitlines()[1:11]
    values = [float(line.split()[1]) for line in ranking]
    assert len(values) == 10 and values == sorted(values, reverse=True)
    assert all("learn:exploration.squarecb_gamma_scale=" in line for line in ranking)
