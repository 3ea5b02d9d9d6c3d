"""The whole QIPO study in one run on a many-core machine: data, QIPO tuning, selection, final comparison.

Two sweeps of --workers processes (agm.training.sweep.run_sweep, one torch thread each): steps 1-3 run in the first;
step 4 and the baselines on the Hopper data made in step 1 in the second:
  1. Hopper-v5 medium-replay data: online TD3 trained here (experiments/efm/qipo_data.py, --hopper-seconds budget);
  2. QIPO tuning on pendulum-mixed and invpend-mixed with the tuning seeds (--tune-seeds, disjoint from the reporting
     seeds): every phase-3 variant x act-time sampler of experiments/efm/qipo_compare.py's sweep;
  3. IQL and TD3+BC on every data set with the reporting seeds (Hopper once its data exists);
  4. once tuning is done: the variant + sampler with the best mean score over the two tuning data sets (ties: the
     first in sweep order) becomes QIPO's reported setting, run with the reporting seeds on all three data sets
     (Hopper was never used for tuning).
Results: --out/qipo_tune.json (sweep), --out/qipo_compare.json (final table with 95% CIs), the Hopper data files.

    python experiments/efm/qipo_all.py --workers 16 --out /tmp/qipo_all
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import qipo_compare as qc  # noqa: E402


def _hopper_task(argv):
    import torch

    torch.set_num_threads(1)
    import qipo_data

    qipo_data.main(argv)
    return {"task": "hopper_data"}


def _task(job):
    """A job of the sweeps: ("hopper_data", qipo_data argv) or (kind, qipo_compare.run_job spec)."""
    kind, payload = job
    return _hopper_task(payload) if kind == "hopper_data" else qc.run_job(payload)


def _key(job) -> str:
    kind, payload = job
    return kind if kind == "hopper_data" else f"{kind}/{qc.job_key(payload)}"


def select(tune_summary: dict, datasets) -> tuple[str, float]:
    """The row (variant + sampler) of the sweep with the best mean score over the tuning data sets."""
    names = [k for k in tune_summary[datasets[0]] if k.startswith("qipo")]
    scores = {k: sum(tune_summary[d][k]["mean"] for d in datasets) / len(datasets) for k in names}
    best = max(names, key=lambda k: scores[k])  # max keeps the first of equal scores
    return best, scores[best]


def main(argv=None) -> int:
    from agm.data.offline import load_npz
    from agm.methods.efm import QIPOConfig, normalized_score
    from agm.training.config import build_config
    from agm.training.results import machine_info, write_result
    from agm.training.sweep import run_sweep

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--tune-seeds", type=int, nargs="+", default=[100, 101, 102])
    p.add_argument("--k1", type=int, default=4000)
    p.add_argument("--k2", type=int, default=4000)
    p.add_argument("--k3", type=int, default=4000)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--hopper-steps", type=int, default=100_000)
    p.add_argument("--hopper-seconds", type=float, default=200.0)
    p.add_argument("--hopper-data", default=None, help="an existing Hopper medium-replay .npz (skips step 1)")
    p.add_argument("--third", default="hopper-medium-replay", choices=["hopper-medium-replay", "pendulum-medium-replay"],
                   help="the third data set (pendulum-medium-replay: --pendulum-data, made by qipo_data.py --env Pendulum-v1)")
    p.add_argument("--pendulum-data", default="/tmp/qipo_data/Pendulum-v1_medium_replay.npz")
    p.add_argument("--tune-episodes", type=int, default=None, help="evaluation episodes of the tuning runs (default --episodes)")
    p.add_argument("--n-transitions", type=int, default=30_000)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--data-dir", default=None, help="where the generated pendulum / invpend data go (default: OUT/data)")
    p.add_argument("--medium-transitions", type=int, default=20_000)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="/tmp/qipo_all")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hopper_extra = []
    if args.quick:
        args.seeds, args.tune_seeds, args.k1, args.k2, args.k3 = [0, 1], [100], 60, 60, 60
        args.hidden, args.episodes, args.n_transitions, args.hopper_steps = 32, 2, 3000, 2000
        args.set = ["renew_every=30", "support_states=256", *args.set]
        hopper_extra = ["--start-steps", "500", "--eval-every", "500", "--medium-transitions", "500", "--hidden", "32"]
    cargs = argparse.Namespace(n_transitions=args.n_transitions, data_seed=0, data_dir=args.data_dir or str(out / "data"),
                               hopper_data=args.hopper_data or str(out / "Hopper-v5_medium_replay.npz"), pendulum_data=args.pendulum_data)
    Path(cargs.data_dir).mkdir(parents=True, exist_ok=True)
    small = ["pendulum-mixed", "invpend-mixed"]
    qipo_set = [f"behaviour_steps={args.k1}", f"q_steps={args.k2}", f"improve_steps={args.k3}", *args.set]
    base = build_config(QIPOConfig, None, qipo_set)
    data_scores = {}
    for ds in small + ([args.third] if args.third != "hopper-medium-replay" or args.hopper_data else []):
        d = load_npz(qc.dataset_path(ds, cargs))
        data_scores[ds] = float(np.mean(normalized_score(d.episode_returns(), d.meta["ref_random_return"], d.meta["ref_expert_return"])))

    def spec(ds, method, seed, variants=({},), samplers=None, episodes=None):
        samplers = samplers or [(base.eval_sampler_steps or base.sampler_steps, base.eval_sampler_method or base.sampler_method)]
        return {"dataset": ds, "env": qc.DATASETS[ds], "data_path": str(qc.dataset_path(ds, cargs)), "method": method, "seed": seed,
                "steps": args.k1 + args.k2 + args.k3, "hidden": args.hidden, "depth": args.depth, "qipo_set": qipo_set,
                "variants": list(variants), "samplers": list(samplers), "episodes": episodes or args.episodes}

    t0 = time.time()
    tune = {"command": "python experiments/efm/qipo_all.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "settings": vars(args), "qipo_config": base.to_dict(), "machine": machine_info(), "jobs": []}
    final = {**{k: v for k, v in tune.items() if k != "jobs"}, "jobs": []}
    hopper_ready = args.hopper_data is not None or args.third != "hopper-medium-replay"
    chosen = None

    def record(job, res):
        kind, payload = job
        if kind == "hopper_data":
            d = load_npz(cargs.hopper_data)
            data_scores["hopper-medium-replay"] = float(np.mean(normalized_score(
                d.episode_returns(), d.meta["ref_random_return"], d.meta["ref_expert_return"])))
            print(json.dumps({"hopper_data": "ready", "t": time.time() - t0}), flush=True)
            return
        target = tune if kind == "tune" else final
        target["jobs"].append(res)
        target["summary"] = qc.summarise(target["jobs"], data_scores)
        target["wall_seconds"] = time.time() - t0
        target["machine"]["load_avg_at_end"] = os.getloadavg()
        print(json.dumps({k: res.get(k) for k in ("dataset", "method", "seed", "score", "seconds")}), flush=True)
        write_result(out / ("qipo_tune.json" if kind == "tune" else "qipo_compare.json"), target)

    # sweep 1: the Hopper data (when not given), the tuning runs and the baselines on the data sets that exist
    jobs = [] if hopper_ready else [("hopper_data", ["--env", "Hopper-v5", "--steps", str(args.hopper_steps), "--max-seconds",
                                                     str(args.hopper_seconds), "--out", str(out), "--medium-transitions",
                                                     str(args.medium_transitions), *hopper_extra])]
    jobs += [("tune", spec(ds, "qipo", s, qc.TUNE_VARIANTS, qc.TUNE_SAMPLERS, args.tune_episodes)) for ds in small for s in args.tune_seeds]
    jobs += [("final", spec(ds, m, s)) for ds in small + ([args.third] if hopper_ready else []) for m in ("iql", "td3bc") for s in args.seeds]
    run_sweep(jobs, _task, key=_key, workers=args.workers, on_record=record)
    # the selected QIPO setting (best mean score over the tuning data sets)
    name, score = select(tune["summary"], small)
    for v in tune["jobs"][0]["variants"]:
        for smp in v["samplers"]:
            row = "qipo " + " ".join(f"{k}={val}" for k, val in v["variant"].items()) + f" act={smp['steps']}{smp['method']}"
            if row == name:
                chosen = (v["variant"], (smp["steps"], smp["method"]))
    tune["selected"] = {"row": name, "mean_score_over_tuning_sets": score, "variant": chosen[0], "sampler": list(chosen[1])}
    final["qipo_selected"] = tune["selected"]
    print(json.dumps({"selected": tune["selected"]}), flush=True)
    write_result(out / "qipo_tune.json", tune)
    # sweep 2: the baselines on the Hopper data made in sweep 1, and QIPO's selected setting on every data set
    jobs = [] if hopper_ready else [("final", spec("hopper-medium-replay", m, s)) for m in ("iql", "td3bc") for s in args.seeds]
    jobs += [("final", spec(ds, "qipo", s, [chosen[0]], [chosen[1]])) for ds in small + [args.third] for s in args.seeds]
    run_sweep(jobs, _task, key=_key, workers=args.workers, on_record=record)
    print(f"wall {time.time() - t0:.0f} s")
    for ds, rows in final.get("summary", {}).items():
        print(ds, "data", rows["behaviour_data_score"])
        for k, v in rows.items():
            if isinstance(v, dict):
                print(f"  {k:60s} {v['mean']:7.1f}  [{v['ci95'][0]:.1f}, {v['ci95'][1]:.1f}]")
    return 0


import numpy as np  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
