"""The grid as independent jobs, in dependency waves, for a cluster scheduler or a
parallel shell (DESIGN.md, "Devices": rows x seeds scale out as independent stages).

    python -m rlcv.fanout            # one line per job: <wave> TAB <command>

Wave 0 writes (smoke/ci) and stages each dataset; wave k >= 1 trains and evaluates one
(row, seed) whose required rows, and the twin whose runs it copies (rlcv.twins), are in
earlier waves; the last wave builds the report.
Jobs of one wave are independent: run them at once (`xargs -P N`, a job array), the next
wave after. Every job is an `rlcv` command on the shared working tree: `rlcv train`
locks its (row, seed), so two jobs never train the same run. `dvc commit -f` at the end
records the outputs in dvc.lock, so a later `dvc repro` reruns only what changes.
"""

from __future__ import annotations

import sys

from rlcv import params as P


def waves(params: P.Params, rows: dict) -> list[list[str]]:
    """The jobs of every wave, in order (see the module docstring)."""
    from rlcv import twins

    depth: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in depth:
            depth[name] = 1 + max((level(r) for r in twins.waits_for(params, rows[name])),
                                  default=0)
        return depth[name]

    datasets = sorted({row.dataset for row in rows.values()})
    prepare = [f"rlcv synth {d} && rlcv stage {d}" if params.synthetic else f"rlcv stage {d}"
               for d in datasets]
    out: list[list[str]] = [prepare]
    for name in rows:
        k = level(name)
        while len(out) <= k:
            out.append([])
        out[k] += [f"rlcv train {name} --seed {s} && rlcv evaluate {name} --seed {s}"
                   for s in params.seeds]
    out.append(["rlcv report && dvc commit -f"])
    return out


def main(argv: list[str] | None = None) -> int:
    """Print `<wave>\t<command>` for every job of the grid of the active params."""
    import methods

    params = P.load(argv[0] if argv else None)
    for k, jobs in enumerate(waves(params, methods.METHODS)):
        for job in jobs:
            print(f"{k}\t{job}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
