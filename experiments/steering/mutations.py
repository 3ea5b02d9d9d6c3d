"""Single-mutation check of the steering objectives (issue 14): apply each mutation to the source, run the tests that
should kill it, check that they FAIL, restore the file. A surviving mutant is a missing test.

    .venv/bin/python experiments/steering/mutations.py      # writes experiments/results/steering_mutations.json

Runs pytest in a subprocess per mutation (single process, ~10-40 s each). The source file is restored in a
``finally`` block, also on Ctrl-C.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOC = "src/agm/methods/steering/soc.py"
RR = "src/agm/methods/steering/relative_reward.py"
T_GRAD = "tests/methods/steering/test_soc_gradients.py"
T_RR = "tests/methods/steering/test_relative_reward_formulas.py"

# (name, file, original text, mutated text, test selection that must fail)
MUTATIONS = [
    ("control: base drift without its x-derivative (the no_grad bug)", SOC,
     "* (self.ft(x, t) - self.base(x, t))", "* (self.ft(x, t) - self.base(x, t).detach())",
     f"{T_GRAD}::test_every_soc_loss_gradient_matches_finite_differences"),
    ("rollout: noiseless last base step without its x-derivative", SOC,
     "x = x + h * self.base(x, t)  #", "x = x + h * self.base(x, t).detach()  #",
     f"{T_GRAD}::test_every_soc_loss_gradient_matches_finite_differences"),
    ("cross-entropy negated", SOC, "return w * y, info", "return -w * y, info",
     f"{T_GRAD}::test_cross_entropy_is_lower_at_the_optimum_than_at_the_base"),
    ("relative-entropy running cost doubled", SOC, "cost = cost + 0.5 * h * self.control", "cost = cost + 1.0 * h * self.control",
     f"{T_GRAD}::test_relative_entropy_at_optimum_equals_minus_log_normaliser"),
    ("loss clipping ignored", SOC, "per = per.clamp(max=self.loss_clip)", "per = per",
     f"{T_GRAD}::test_loss_clipping_bounds_every_adjoint_matching_term"),
    ("AM time subsampling: last K/5 instead of K/4", SOC, "n_last = max(1, round(self.steps / 4))", "n_last = max(1, round(self.steps / 5))",
     f"{T_GRAD}::test_adjoint_matching_time_subsampling_recipe"),
    ("AM time subsampling: one random early step fewer", SOC, "[: min(n_last, len(first))]", "[: min(n_last - 1, len(first))]",
     f"{T_GRAD}::test_adjoint_matching_time_subsampling_recipe"),
    ("AM time subsampling ignored by the loss", SOC, "ks = self._selected_steps(generator)", "ks = [k for k in range(self.steps) if bool(traj.noisy[k])]",
     f"{T_GRAD}::test_adjoint_matching_time_subsampling_recipe"),
    ("steering without the division by c(t)", RR,
     "/ self.loss.scale(tt.clamp_min(self.t_start)).clamp_min(1e-6)", "",
     f"{T_RR}::test_steering_divides_by_the_target_scale"),
    ("wrong posterior mean (sigma instead of sigma^2)", RR, "((x + sg**2 * s) / a.clamp_min(1e-3))", "((x + sg * s) / a.clamp_min(1e-3))",
     f"{T_RR}::test_base_mean_input_is_the_gaussian_posterior_mean"),
    ("weighting for non-score targets lost", RR, "w = w / self.scale(t).clamp_min(1e-6) ** 2", "w = w",
     f"{T_RR}::test_non_score_targets_keep_the_score_space_weighting"),
]


def run_one(name: str, file: str, old: str, new: str, tests: str) -> dict:
    path = ROOT / file
    text = path.read_text()
    if text.count(old) != 1:
        return {"mutation": name, "file": file, "status": f"not applied: the original text occurs {text.count(old)} times"}
    t0 = time.time()
    try:
        path.write_text(text.replace(old, new))
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:xdist", "-p", "no:cacheprovider", tests],
                              cwd=ROOT, capture_output=True, text=True)
    finally:
        path.write_text(text)
    killed = proc.returncode == 1
    status = "killed" if killed else ("SURVIVED" if proc.returncode == 0 else f"error (pytest exit {proc.returncode})")
    return {"mutation": name, "file": file, "tests": tests, "status": status, "seconds": round(time.time() - t0, 1),
            "last_line": proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""}


def main() -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from agm.training.results import write_result

    # the unmutated tests must pass first, or "killed" would mean nothing
    base = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", T_GRAD, T_RR],
                          cwd=ROOT, capture_output=True, text=True)
    if base.returncode != 0:
        print(base.stdout[-2000:])
        raise SystemExit("the unmutated tests fail; fix them first")
    rows = []
    for m in MUTATIONS:
        row = run_one(*m)
        rows.append(row)
        print(f"{row['status']:>10}  {row['mutation']}", flush=True)
    out = ROOT / "experiments/results/steering_mutations.json"
    write_result(out, {"command": ".venv/bin/python experiments/steering/mutations.py", "mutations": rows,
                       "killed": sum(r["status"] == "killed" for r in rows), "total": len(rows)})
    print(f"wrote {out}")
    return 0 if all(r["status"] == "killed" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
