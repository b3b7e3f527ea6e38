"""Learning from the stream, as plain state machines the shells drive: the join of
feedback to decisions within a slot's attribution window (`join`), the learner's state
from a decision to a rewarded, learned event and its checkpoint (`learner_core`,
`checkpoint`), the learner that learns from already rewarded events
(`rewarded_learning`), and the rules for switching a slot to tuned settings (`tuning`)."""
