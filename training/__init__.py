"""Warm start (`artbandit train`): a slot's policy trained on a logged rewarded stream,
stored in the model store and announced on the models topic, so serving and the learner
start from it instead of from nothing. An online write, so it lives apart from replay/,
which only reads logs and evaluates."""
