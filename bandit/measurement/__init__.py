"""Measuring what the optimizer does: the lift of treatment over the control holdout per
slot, clustered by people buckets, with guardrails and per-period tallies (`lift`); the
check that replay agrees with the holdout (`calibration`); the intervals and tests under
both (`stats`). All of it from running sums that merge exactly across replicas."""
