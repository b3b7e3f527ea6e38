"""artbandit's pure core: what a slot decides, how it learns and how that is measured, on
plain data. Four groups and the whole configuration:

- `contracts`: the event contracts on the wire (decisions, feedback, rewarded events) and
  a slot's settings;
- `policies`: deciding over a candidate set (VW and the baselines), the VW text encoding,
  the exposure floors and consistent draws, the change detector that re-opens exploration;
- `measurement`: the lift of treatment over control, its guardrails, the calibration
  check, and the statistics under them;
- `learning`: joining feedback to decisions, the learner's state machine and checkpoint
  types, the rewarded learner, the rules for switching to tuned settings;
- `config`: every setting validated from a plain mapping (reading files is the shells').

No module here imports Kafka, Flask, gunicorn, sockets, subprocesses or HTTP (a test keeps
it so); serving/, learner/ and replay/ are the shells that feed it, storage/ keeps its
models and checkpoints on disk.
"""

__version__ = "0.1.0"
