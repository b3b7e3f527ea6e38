"""Offline evaluation: log readers, off-policy estimators, learning-policy replay, reports."""
