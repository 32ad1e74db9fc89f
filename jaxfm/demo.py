"""``make demo``: the main job end to end on built-in data, then where to look.

Today: the quickstart (Lorenz-63 flow map, residual MLP) trained with the full engine:
sharded jit step, Orbax checkpoints, Grain input, metrics, evaluation, plot. The
multi-physics surrogate pipeline replaces it once it lands.

    python -m jaxfm.demo --workdir runs/demo [--smoke]
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxfm.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/demo", help="where results and plots go")
    parser.add_argument("--smoke", action="store_true", help="seconds instead of minutes")
    args = parser.parse_args(argv)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    from experiments import quickstart
    from jaxfm.config import override

    t0 = time.time()
    cfg = quickstart.smoke() if args.smoke else quickstart.default()
    cfg = override(cfg, {"workdir": os.path.join(args.workdir, "quickstart")})
    results = quickstart.main(cfg)
    wd = os.path.abspath(cfg.workdir)
    print(f"\njaxfm demo finished in {time.time() - t0:.0f}s")
    print(f"  held-out MSE {results['eval/mse']:.3g} vs persistence "
          f"{results['eval/persistence_mse']:.3g}")
    print(f"  results: {wd}/results.json")
    print(f"  metrics: {wd}/metrics.jsonl")
    for plot in results.get("plots", []):
        print(f"  plot:    {os.path.abspath(plot)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
