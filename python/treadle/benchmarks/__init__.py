"""treadle's benchmark harness: each ``bench_<name>`` module times treadle against the standard
library (and peers, when installed) in the same run and prints the ratios.

    treadle bench [--quick] [name ...]      # every benchmark, or the named ones
    python -m treadle.benchmarks.bench_sync [--quick]

In a source checkout, ``benches/bench_<name>.py`` runs the same module. The names are listed in
``NAMES``.
"""

from __future__ import annotations

#: The benchmarks, in the order ``treadle bench`` runs them.
NAMES = ("sync", "queue", "pool", "process", "mp", "mp_pool", "shm", "dask", "deadlock", "stats")
