"""Fixed-horizon intervals against always-valid ones, when the lift is watched as it grows.

Each run splits decisions between treatment and control (10% holdout) with Bernoulli rewards
at 5% in control, and looks at the lift 50 times, evenly, through the product's own sums and
intervals (`sim/sequential.py`; looks count from 200 decisions in control). Prints, for the
fixed-horizon 95% interval and for the always-valid sequence:

  A/A      runs of --aa-decisions with no lift: the share called significant at some look
  power    runs of --power-decisions with a true 10% lift: the share detected at some look,
           and the median decisions at detection

Run: python benchmarks/sequential_bench.py [--runs 500] [--aa-decisions 100000]
         [--power-decisions 600000] [--looks 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from sim.sequential import Design, Run, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--looks", type=int, default=50)
    parser.add_argument("--aa-decisions", type=int, default=100_000)
    parser.add_argument("--power-decisions", type=int, default=600_000)
    parser.add_argument("--rate", type=float, default=0.05, help="control's reward rate")
    args = parser.parse_args()
    started = time.perf_counter()
    null = Design(args.aa_decisions, args.looks, args.rate)
    lifted = Design(args.power_decisions, args.looks, args.rate, lift=0.1)
    aa = [run(np.random.default_rng(s), null) for s in range(args.runs)]
    power = [run(np.random.default_rng(10**6 + s), lifted) for s in range(args.runs)]
    error = 2 * (0.05 * 0.95 / args.runs) ** 0.5
    print(f"{args.runs} runs per row, {args.looks} looks each, control reward rate "
          f"{args.rate:.0%}, 10% holdout ({time.perf_counter() - started:.0f} s)")  # fmt: skip
    print(f"{'interval':<22}{'A/A false alarms':>18}{'power, +10% lift':>18}"
          f"{'median decisions to detect':>30}")  # fmt: skip
    for name, pick in (("fixed-horizon 95%", _fixed), ("always-valid (95%)", _sequential)):
        alarms = np.mean([pick(r) is not None for r in aa])
        found = [pick(r) for r in power if pick(r) is not None]
        median = f"{statistics.median(found):,.0f}" if found else "-"
        print(f"{name:<22}{alarms:>18.1%}{len(found) / len(power):>18.1%}{median:>30}")
    print(f"(A/A at {args.aa_decisions:,} decisions a run, power at {args.power_decisions:,}; "
          f"a valid rule stays at or below 5% + {error:.1%} of simulation error)")  # fmt: skip


def _fixed(result: Run) -> float | None:
    return result.fixed


def _sequential(result: Run) -> float | None:
    return result.sequential


if __name__ == "__main__":
    main()
