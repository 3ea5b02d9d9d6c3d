"""Image-scale SOC fine-tuning: steer the digits model of ``agm train`` towards one digit class (issue 19).

GPU run (one H200, about 9 minutes (551 s measured): base model 1500 steps of images_digits_gpu, then 250
adjoint-matching iterations at K = 20, batch 64; results in docs/steering.md):

    PYTHONUNBUFFERED=1 python3 experiments/steering/soc_digits.py --gpu --workdir /tmp/soc_digits --out experiments/results/steering_soc_digits.json

CPU smoke test (tiny model and steps, < 2 min; proves the pipeline, its numbers mean nothing):

    .venv/bin/python experiments/steering/soc_digits.py --quick

What it does:
1. The base model: ``--run DIR`` (a run folder of ``agm train``), or else trains one with AGM's built-in config
   (``images_digits_gpu`` with ``--gpu``, ``images_digits`` otherwise) through ``agm.methods.agm.run.train``.
   It is a Brownian-bridge drift b(x, t) with noise s = path.sigma; ``BridgeVelocity`` turns it into the
   velocity of its marginal path and ``MemorylessSchedule(bridge_sigma=s)`` gives the memoryless SDE
   (docs/steering.md). The fine-tuned model is a trainable copy of the drift network.
2. Two digits classifiers (``agm.metrics.frechet.train_digits_classifier``): seed 1 defines the reward
   r(x) = log p(c | x) for the class c = ``--digit``; seed 0 (as in experiments/agm/images.py) defines the
   FD_digits feature space and the "classified as c" rate, so the metric is not the network being optimised.
   With lambda = 1 the target p_base(x) p(c | x) / Z is the base law conditioned on c by the reward classifier;
   it is sampled exactly by rejection from base samples (accept with probability p(c | x)): the "exact tilt".
3. Fine-tuning with one SOC loss (default adjoint matching, AM's time subsampling) through the shared Trainer.
4. Report, for the base, the fine-tuned model and the exact tilt: mean reward, the fraction the FD classifier
   labels c, FD_digits to the real images of class c (``agm.metrics.frechet.feature_metrics``, with PRDC), and
   FD_digits to all digits (diversity kept?). Curves of reward every ``--eval-every`` iterations. JSON via
   ``agm.training.results.write_result`` and PNG grids beside it.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

try:  # agm.metrics imports POT at package import; W2 is not used here and POT may be absent on a GPU box
    import ot  # noqa: F401
except ImportError:
    sys.modules["ot"] = types.ModuleType("ot")

import torch  # noqa: E402

from agm.training.results import write_result  # noqa: E402


class ClassLogProb(torch.nn.Module):
    """r(x) = log p(c | x) of a digits classifier, on flat images (B, D) -> (B,)."""

    def __init__(self, clf: torch.nn.Module, shape: tuple[int, ...], digit: int) -> None:
        super().__init__()
        self.clf, self.shape, self.digit = clf, shape, digit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.clf(x.reshape(x.shape[0], *self.shape).float())
        return torch.log_softmax(logits, dim=1)[:, self.digit]


def base_run(args, dev: str) -> Path:
    """The base model's run folder: --run, or a new run of AGM's digits config in <out stem>_base/."""
    if args.run:
        return Path(args.run)
    from agm.methods.agm.config import load_config
    from agm.methods.agm.run import train

    run_dir = Path(args.workdir) / "base"
    if (run_dir / "run.json").exists() and any((run_dir / "checkpoints").glob("*")):
        print(f"[base] reusing {run_dir}", flush=True)
        return run_dir
    over = [f"train.device={dev}", "train.progress=false", *args.base_override]
    if args.quick:
        over += ["train.steps=40", "train.batch_size=32", "model.channels=8", "train.log_every=20", "train.ckpt_every=40",
                 "potential.warmup_steps=5"]
    cfg = load_config(args.base_config, over)
    t0 = time.perf_counter()
    train(cfg, run_dir, overwrite=True)
    print(f"[base] trained {cfg.train.steps} steps in {time.perf_counter() - t0:.0f}s -> {run_dir}", flush=True)
    return run_dir


def classifier(size: int, steps: int, seed: int, dev: str) -> tuple[torch.nn.Module, float]:
    from agm.metrics.frechet import train_digits_classifier

    net, acc = train_digits_classifier(size, steps=steps, seed=seed, device=dev)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(dev).eval(), acc


@torch.no_grad()
def samples(drift, n: int, shape, sigma: float, steps: int, seed: int, dev: str, batch: int) -> torch.Tensor:
    """The model's own sampler (Euler-Maruyama with the bridge noise, agm.methods.agm.generate), clamped to [-1, 1]."""
    from agm.methods.agm import generate

    g = torch.Generator(dev).manual_seed(seed)
    return generate(drift, n, shape, sigma=sigma, steps=steps, method="em", generator=g, device=dev, batch_size=batch).clamp(-1, 1)


def metrics(x: torch.Tensor, reward, fd_net, digit: int, real_c: torch.Tensor, real_all: torch.Tensor) -> dict:
    from agm.metrics.frechet import extract_features, feature_metrics

    with torch.no_grad():
        r = torch.cat([reward(x[i:i + 500].reshape(min(500, x.shape[0] - i), -1)) for i in range(0, x.shape[0], 500)])
        pred = extract_features(fd_net, x).argmax(1)
    vs_c = feature_metrics(fd_net, x, real_c)
    vs_all = feature_metrics(fd_net, x, real_all)
    return {"n": int(x.shape[0]), "mean_reward": float(r.mean()), "p_class_by_fd_classifier": float((pred == digit).float().mean()),
            "fd_to_class": vs_c["fd"], "prdc_to_class": {k: v for k, v in vs_c.items() if k != "fd"},
            "fd_to_all_digits": vs_all["fd"], "class_histogram": torch.bincount(pred, minlength=10).tolist()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="run folder of `agm train` (digits); default: train one into --workdir/base")
    ap.add_argument("--gpu", action="store_true", help="GPU settings: images_digits_gpu base (32x32, 1500 steps), K = 20, 250 iterations, 2000 samples")
    ap.add_argument("--quick", action="store_true", help="CPU smoke test (< 2 min): tiny base, 4 iterations, 64 samples")
    ap.add_argument("--base-config", default=None, help="AGM config for the base (default images_digits / images_digits_gpu)")
    ap.add_argument("--base-override", nargs="*", default=[], help="key=value overrides of the base config")
    ap.add_argument("--digit", type=int, default=3, help="the digit class c of the reward log p(c | x)")
    ap.add_argument("--lam", type=float, default=1.0, help="reward multiplier lambda (1: the target is the base conditioned on c)")
    ap.add_argument("--loss", default="adjoint_matching", help="SOC loss (agm.methods.steering.soc.SOC_LOSSES)")
    ap.add_argument("--steps", type=int, default=None, help="K, Euler-Maruyama steps of the memoryless SDE")
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None, help="trajectories per iteration")
    ap.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate of the fine-tuned drift (AM used 2e-5 on a large model)")
    ap.add_argument("--loss-clip", type=float, default=None, help="AM per-step clip LCT (default: off)")
    ap.add_argument("--n-samples", type=int, default=None, help="samples per evaluation")
    ap.add_argument("--n-pool", type=int, default=None, help="base samples for the exact tilt (rejection)")
    ap.add_argument("--sample-steps", type=int, default=None, help="Euler-Maruyama steps of the evaluation sampler")
    ap.add_argument("--eval-every", type=int, default=None, help="reward curve: every N iterations (on --curve-n samples)")
    ap.add_argument("--curve-n", type=int, default=None)
    ap.add_argument("--classifier-steps", type=int, default=None)
    ap.add_argument("--workdir", default="runs/soc_digits", help="where the base run is written when --run is not given")
    ap.add_argument("--out", default="experiments/results/steering_soc_digits.json")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.gpu and args.quick:
        raise SystemExit("--gpu and --quick exclude each other")
    dev = "cuda" if args.gpu else "cpu"
    # per-mode defaults (an explicit option wins): CPU default, --gpu, --quick
    modes = {"cpu": dict(steps=20, iterations=300, batch=32, n_samples=1000, n_pool=10000, sample_steps=100, eval_every=100, curve_n=256, classifier_steps=1500),
             "gpu": dict(steps=20, iterations=250, batch=64, n_samples=2000, n_pool=10000, sample_steps=100, eval_every=50, curve_n=256, classifier_steps=1500),
             "quick": dict(steps=6, iterations=4, batch=8, n_samples=64, n_pool=400, sample_steps=20, eval_every=2, curve_n=32, classifier_steps=60)}
    for key, val in modes["gpu" if args.gpu else "quick" if args.quick else "cpu"].items():
        if getattr(args, key) is None:
            setattr(args, key, val)
    if args.gpu:
        args.base_config = args.base_config or "images_digits_gpu"
        if not any(o.startswith("train.steps=") for o in args.base_override):  # 1500 of the config's 4000 steps: fits one 10-min call
            # ema_warmup: at 1500 steps the config's EMA decay 0.999 would still hold 0.999**1500 = 22 % of the random
            # initial weights (session 7's run, docs/steering.md); the warm-up decay (1 + k)/(10 + k) removes that bias
            args.base_override += ["train.steps=1500", "train.ckpt_every=1500", "train.ema_warmup=true"]
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if args.quick:
        if args.out == ap.get_default("out"):
            args.out = "/tmp/steering_soc_digits_quick.json"
        if args.workdir == ap.get_default("workdir"):
            args.workdir = "/tmp/soc_digits_quick"
    args.base_config = args.base_config or "images_digits"
    torch.set_num_threads(1 if not args.gpu else 8)
    t_start = time.perf_counter()

    from agm.data.images import digits_dataset, save_image_grid
    from agm.methods.agm.run import load_sampler_drift
    from agm.methods.steering import tilted_rejection_sample
    from agm.methods.steering.soc import BridgeVelocity, FlatField, MemorylessSchedule, SOCProblem, finetune

    run_dir = base_run(args, dev)
    t_base = time.perf_counter() - t_start
    drift, cfg, shape = load_sampler_drift(run_dir, dev)
    shape = tuple(shape)
    s = float(cfg.path.sigma if cfg.sample.sigma is None else cfg.sample.sigma)
    size = shape[-1]
    t0 = time.perf_counter()
    clf_r, acc_r = classifier(size, args.classifier_steps, 1, dev)
    clf_fd, acc_fd = classifier(size, args.classifier_steps, 0, dev)
    t_clf = time.perf_counter() - t0
    reward = ClassLogProb(clf_r, shape, args.digit)
    x_all, y_all = digits_dataset(size)
    real_c = x_all[y_all == args.digit]

    for p in drift.parameters():
        p.requires_grad_(False)
    drift.eval()
    ft_drift = copy.deepcopy(drift)
    for p in ft_drift.parameters():
        p.requires_grad_(True)
    for m in ft_drift.modules():  # no dropout (the Trainer puts its networks in train mode): the SOC losses compare
        if isinstance(m, torch.nn.Dropout):  # ft and base at the same (x, t), and u = 0 at the start
            m.p = 0.0
    base_v = FlatField(BridgeVelocity(drift, s), shape)
    ft_v = FlatField(BridgeVelocity(ft_drift, s), shape)
    prob = SOCProblem(base=base_v, ft=ft_v, reward=reward, dim=base_v.dim, reward_multiplier=args.lam, steps=args.steps,
                      schedule=MemorylessSchedule(1.0 / args.steps, bridge_sigma=s), time_subsampling="am",
                      loss_clip=args.loss_clip)
    n_params = sum(p.numel() for p in ft_drift.parameters())
    print(f"[setup] base {run_dir} sigma {s} shape {shape} params {n_params}; classifiers acc {acc_r:.3f} (reward) "
          f"{acc_fd:.3f} (FD) in {t_clf:.0f}s; class {args.digit}: {real_c.shape[0]} real images", flush=True)

    bs = 500 if args.gpu else 256
    t0 = time.perf_counter()
    pool = samples(drift, args.n_pool, shape, s, args.sample_steps, args.seed + 1, dev, bs)
    with torch.no_grad():
        logw = args.lam * torch.cat([reward(pool[i:i + 500].reshape(min(500, pool.shape[0] - i), -1)) for i in range(0, pool.shape[0], 500)])
    exact = tilted_rejection_sample(pool.cpu(), logw.cpu(), generator=torch.Generator().manual_seed(args.seed + 2))
    t_pool = time.perf_counter() - t0
    res_base = metrics(pool[: args.n_samples], reward, clf_fd, args.digit, real_c.to(dev), x_all.to(dev))
    res_exact = None
    if exact.shape[0] >= 2:
        xe = exact[: args.n_samples].to(dev)
        res_exact = metrics(xe, reward, clf_fd, args.digit, real_c.to(dev), x_all.to(dev))
    print(f"[base] {res_base}\n[exact tilt: {exact.shape[0]} of {args.n_pool} accepted] {res_exact}", flush=True)

    curve, eval_s = [], [0.0]

    def cb(it: int, lv: float, info: dict) -> None:
        if (it + 1) % args.eval_every == 0 or it == 0:
            te = time.perf_counter()
            ft_drift.eval()
            xc = samples(ft_drift, args.curve_n, shape, s, args.sample_steps, 777, dev, bs)
            with torch.no_grad():
                rc = float(reward(xc.reshape(xc.shape[0], -1)).mean())
            curve.append({"iteration": it + 1, "loss": lv, "mean_reward": rc})
            print(f"[ft] it {it + 1} loss {lv:.4g} reward {rc:.4f}", flush=True)
            eval_s[0] += time.perf_counter() - te

    t0 = time.perf_counter()
    finetune(prob, args.loss, iterations=args.iterations, batch=args.batch, lr=args.lr, grad_clip=1.0, seed=args.seed,
             device=dev, callback=cb)
    if dev == "cuda":
        torch.cuda.synchronize()
    t_ft = time.perf_counter() - t0 - eval_s[0]
    ft_drift.eval()
    x_ft = samples(ft_drift, args.n_samples, shape, s, args.sample_steps, args.seed + 3, dev, bs)
    res_ft = metrics(x_ft, reward, clf_fd, args.digit, real_c.to(dev), x_all.to(dev))
    print(f"[fine-tuned] {res_ft}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.with_suffix("")
    save_image_grid(pool[:64].cpu(), f"{stem}_base.png", nrow=8, upscale=2)
    save_image_grid(x_ft[:64].cpu(), f"{stem}_finetuned.png", nrow=8, upscale=2)
    result = {
        "command": " ".join(["python", "experiments/steering/soc_digits.py", *(sys.argv[1:] if argv is None else argv)]),
        "settings": vars(args), "base_run": str(run_dir), "base_config": {"path.sigma": s, "data_shape": list(shape)},
        "drift_params": n_params, "digit": args.digit,
        "classifier_heldout_accuracy": {"reward_seed1": acc_r, "fd_seed0": acc_fd},
        "base": res_base, "exact_tilt": res_exact, "exact_tilt_accepted": int(exact.shape[0]), "finetuned": res_ft,
        "curve": curve,
        "wall_s": {"base_train_or_load": round(t_base, 1), "classifiers": round(t_clf, 1), "pool": round(t_pool, 1),
                   "finetune": round(t_ft, 1), "finetune_s_per_iter": t_ft / args.iterations,
                   "total": round(time.perf_counter() - t_start, 1)},
        "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
        "note": "--quick numbers only prove the pipeline runs" if args.quick else "",
    }
    write_result(out, result)
    print(f"wrote {out} in {time.perf_counter() - t_start:.0f}s (fine-tuning {result['wall_s']['finetune_s_per_iter']:.3f} s/iteration)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
