"""`python -m sweeps.kuzushiji --flagfile=sweeps/flags/....flags --workdir=DIR`: sweeps on kmnist.

A thin entry point: every flag and all the logic live in sweeps.cli and the library.
"""

from sweeps import cli

if __name__ == "__main__":
  cli.entry_point(default_dataset="kmnist")
