"""A large customers CSV for the benchmarks (``datagate sample`` writes small ones)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.samples import customers

__all__ = ["customers"]


def main() -> None:
    """Write a customers CSV: ``python -m bench.generate --rows N OUT.csv``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    customers(args.rows, args.seed).write_csv(args.out)


if __name__ == "__main__":
    main()
