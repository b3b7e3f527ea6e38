"""The one home of Kafka in artbandit: topics, putting events on them, the embedded broker."""
