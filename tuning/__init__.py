"""Self-tuning, the tuner's side: each round replays candidate settings of a slot on its
recent rewarded log, judges their paired gains with lower bounds, and records a winner that
wins `tuning.confirmations` rounds running as the slot's next tuning revision in the model
store (`artbandit tune`). The rules a revision follows are bandit.learning.tuning; the
learner's switch to it is learner.tuning_switch; the admin API's pin and rollback are
serving.admin."""
