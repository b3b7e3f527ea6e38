"""The floor `serving_bench.py` compares artbandit to: a bare Flask app under gunicorn (sync
workers) doing what a decision needs and nothing else. It parses the same request, makes
one VW `cb_explore_adf` predict over it (the artwork slot's own VW arguments, so the model
costs the same), samples a choice and answers JSON; no validation, holdout, metrics or
logging. Run: gunicorn -w 2 -k sync 'benchmarks.bare_app:app'
"""

from __future__ import annotations

import json
import random

import vowpalwabbit
from flask import Flask, Response, request

from bandit.policies.vw import vw_arguments
from storage.config_file import load_config

_slot = load_config(environ={}).slots["artwork"]
_vw: vowpalwabbit.Workspace | None = None  # made per worker, after the fork
app = Flask("bare")


def _features(values: dict) -> str:
    return " ".join(f"{name}={value}" for name, value in values.items())


@app.post("/v1/decide")
def decide() -> Response:
    global _vw
    if _vw is None:
        _vw = vowpalwabbit.Workspace(arg_list=vw_arguments(_slot, "cb_explore_adf"))
    body = json.loads(request.get_data())
    slot = body["slots"][0]
    shared = f"shared |u {_features(body['user'].get('features', {}))} |r {_features(body.get('context', {}))}"
    lines = [
        shared,
        *(f"|a id={c['id']} {_features(c.get('features', {}))}" for c in slot["candidates"]),
    ]
    pmf = _vw.predict(lines)  # one probability per candidate, in their order
    chosen = random.choices(range(len(pmf)), weights=pmf)[0]
    answer = {"decisions": [{"slot": slot["slot"], "chosen": [slot["candidates"][chosen]["id"]],
                             "probabilities": [pmf[chosen]]}]}  # fmt: skip
    return Response(json.dumps(answer), mimetype="application/json")
