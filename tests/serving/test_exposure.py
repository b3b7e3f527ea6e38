"""Exposure options over real HTTP and the embedded broker: consistent artwork for a person
within a period, the exposure floor for flagged titles and for titles the service has shown
too rarely, each with the logged probability equal to what the policy gives on re-scoring."""

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chisquare, kstest

from bandit.policies import build_policy
from tests.helpers import read_topic, running_service

ARTWORKS = [{"id": f"art{a}", "features": {"tone": f"t{a}"}} for a in range(4)]


def artwork_page(user: str, title: int, candidates=ARTWORKS) -> dict:
    return {"user": {"id": user},
            "slots": [{"slot": "artwork", "key": f"title:{title}", "candidates": candidates}]}  # fmt: skip


def test_a_person_sees_the_same_artwork_for_a_title_on_every_visit_of_a_period(make_config, broker):
    config = make_config(
        "slots.artwork.exposure.consistent_period_s=1e9",  # one period for decades
        "slots.artwork.exploration.epsilon=1.0",  # a cold policy then serves uniformly
        "slots.artwork.holdout_fraction=0.0",
    )
    with running_service(config) as service:
        client = service.client()
        seen = {(user, title): Counter() for user in range(40) for title in range(3)}
        for _visit in range(10):
            for user, title in seen:
                answer = client.post("/v1/decide", artwork_page(f"person-{user}", title))[1]
                (decision,) = answer["decisions"]
                seen[user, title][decision["chosen"][0]] += 1
                assert decision["probabilities"] == [0.25]
        logged = read_topic(broker.bootstrap_servers, config.kafka.topics.decisions, 1200)
    assert all(len(choices) == 1 for choices in seen.values())  # 10 visits, one artwork
    first = Counter(next(iter(choices)) for choices in seen.values())
    assert len(first) == 4 and chisquare(list(first.values())).pvalue > 1e-3, first
    assert len(logged) == 1200 and all(e.probabilities == [0.25] for e in logged)


def test_flagged_titles_get_the_floor_and_rare_ones_are_flagged_by_the_service(make_config, broker):
    """art3 is flagged by the request; art1 and art2 are shown about 4% of the time each by
    the cold policy (epsilon 0.2 over 4, less what art3's floor takes), below the share of
    10%, so after 50 offers the service flags them whenever their share is under 10% (the
    log says which decisions) and holds it there. Every logged probability is the policy's
    own on re-scoring, and the choices follow the logged pmfs.

    The flags feed back on past choices (a title shown by luck is flagged less), so summed
    pmfs against counts is no chi-square; a randomized probability integral transform of
    each choice under its own pmf is uniform and independent whatever the feedback."""
    config = make_config(
        "slots.artwork.exposure.floor=0.2", "slots.artwork.exposure.below_share=0.1",
        "slots.artwork.exploration.epsilon=0.2", "slots.artwork.holdout_fraction=0.0",
        # seeded: the draws, and so the counts asserted below, are the same on every run
        # (unseeded, about one run in four left fewer than 50 pages with both flagged)
        "slots.artwork.seed=11",
    )  # fmt: skip
    candidates = [*ARTWORKS[:3], {**ARTWORKS[3], "floor": True}]
    requests = 600
    with running_service(config) as service:
        client = service.client()
        for n in range(requests):
            assert client.post("/v1/decide", artwork_page(f"p{n}", 1, candidates))[0] == 200
        logged = read_topic(broker.bootstrap_servers, config.kafka.topics.decisions, requests)
    assert len(logged) == requests
    logged.sort(key=lambda event: event.ts)
    policy = build_policy(config.slots["artwork"])  # the untrained version serving ran
    flagged, transformed, jitter = Counter(), [], np.random.default_rng(0)
    for event in logged:
        pmf = policy.action_probabilities(event.context, event.candidates)
        chosen = event.chosen_indices()[0]
        assert event.candidates[3].floor and pmf[3] == pytest.approx(0.2)
        assert event.probabilities[0] == pytest.approx(pmf[chosen])
        flagged[tuple(c.floor for c in event.candidates[1:3])] += 1
        transformed.append(sum(pmf[:chosen]) + jitter.random() * pmf[chosen])
    assert flagged[False, False] >= 50 and flagged[True, True] >= 50, flagged
    late = Counter(event.chosen[0] for event in logged[100:])
    assert min(late["art1"], late["art2"]) >= 0.08 * 500, late  # ~0.04 without the flags
    assert kstest(transformed, "uniform").pvalue > 1e-3
