"""QIPO's tuning options (issue 19): the beta schedule over renewals and the act-time ODE sampler; the defaults (the
measured v2 setting) and the built-in config qipo_v1 (the defaults before session 7)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agm.errors import ConfigError
from agm.methods.efm import QIPO, OfflineDataset, QIPOConfig
from agm.samplers import ODESampler
from agm.training.config import build_config


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(n, 2, generator=g)
    return OfflineDataset(observations=obs, actions=torch.rand(n, 1, generator=g) * 2 - 1, rewards=torch.zeros(n),
                          next_observations=obs, terminals=torch.ones(n, dtype=torch.bool), timeouts=torch.zeros(n, dtype=torch.bool))


def _algo(*overrides):
    cfg = build_config(QIPOConfig, None, ["q_steps=0", "behaviour_steps=1", "improve_steps=1000", "renew_every=250",
                                          "policy_hidden=8", "policy_depth=1", "support_states=16", "support_size=2",
                                          "improve_batch_size=4", "freeze_q=true", "train.progress=false", *overrides])
    return QIPO(_data(), cfg, [-1.0], [1.0], seed=0, q_fn=lambda o, a: a[:, 0])


def test_beta_schedule_constant_and_linear():
    """constant: beta at every renewal; linear: beta (l + 1) / L at renewal l of L = 4 (1000 steps, renewal every 250),
    so the last renewal uses beta and the total tilt is beta (L + 1) / 2 = 2.5 beta instead of 4 beta."""
    const, lin = _algo("beta=8"), _algo("beta=8", "beta_schedule=linear")
    assert [const.beta_at(k) for k in (0, 249, 250, 999)] == [8.0] * 4
    assert [lin.beta_at(k) for k in (0, 249, 250, 500, 999)] == [2.0, 2.0, 4.0, 6.0, 8.0]
    assert sum(lin.beta_at(250 * l) for l in range(4)) == pytest.approx(2.5 * 8)
    # the phase-3 batch carries the scheduled beta and the loss's weights use it
    k2 = lin.cfg.phase_ends[1]
    g = torch.Generator().manual_seed(1)
    b = lin.batch(k2 + 250, g)
    assert b["beta"] == 4.0
    _, logs = lin.loss(b, k2 + 250, torch.Generator().manual_seed(2))
    from agm.methods.efm.efm import effective_sample_size, grouped_softmax

    ess = effective_sample_size(grouped_softmax(4.0 * b["support_q"]), dim=-1).mean()
    torch.testing.assert_close(logs["per_state_ess"], ess)


def test_act_time_sampler_is_separate_from_the_support_sampler():
    """eval_sampler_steps/method change only the sampler used by act(); the support actions keep sampler_steps."""
    algo = _algo("sampler_steps=3", "eval_sampler_steps=17", "eval_sampler_method=heun")
    assert (algo.policy.sampler.steps, algo.policy.sampler.method) == (3, "euler")
    assert (algo.act_sampler.steps, algo.act_sampler.method) == (17, "heun")
    default = _algo("sampler_steps=3")
    assert (default.act_sampler.steps, default.act_sampler.method) == (3, "euler")
    obs = torch.randn(5, 2)
    algo.gen.manual_seed(7)
    a = algo.act(obs)
    ref = algo.policy.sample(obs, 1, generator=torch.Generator().manual_seed(7), sampler=ODESampler(17, "heun"))[:, 0]
    torch.testing.assert_close(torch.as_tensor(a), ref)  # action box [-1, 1]: unnormalize is the identity
    other = algo.policy.sample(obs, 1, generator=torch.Generator().manual_seed(7))[:, 0]
    assert not torch.allclose(ref, other)


def test_q_norm_std_makes_the_weights_scale_free():
    """q_norm='std': g = softmax_j(beta Q_ij / s), s = sd of Q_ij - mean_j Q_ij over the batch; so multiplying Q by
    any c > 0 or adding a per-state constant leaves the weights unchanged (with 'none' they change)."""
    from agm.methods.efm import qipo_policy_loss
    from agm.methods.efm.policy import FlowPolicy, Normalizer

    torch.manual_seed(0)
    pol = FlowPolicy(2, 1, Normalizer(torch.zeros(2), torch.ones(2)), hidden=8, depth=1)
    obs, acts, q = torch.randn(6, 2), torch.rand(6, 4, 1) * 2 - 1, torch.randn(6, 4)
    _, g = qipo_policy_loss(pol, obs, acts, q, 2.0, q_norm="std")
    s = (q - q.mean(1, keepdim=True)).std()
    torch.testing.assert_close(g, torch.softmax(2.0 * q / s, 1))
    _, g2 = qipo_policy_loss(pol, obs, acts, 0.01 * q + torch.randn(6, 1), 2.0, q_norm="std")
    torch.testing.assert_close(g, g2)
    _, g3 = qipo_policy_loss(pol, obs, acts, 0.01 * q, 2.0)
    assert not torch.allclose(g, g3)
    with pytest.raises(ConfigError, match="q_norm"):
        qipo_policy_loss(pol, obs, acts, q, 2.0, q_norm="max")


def test_qipo_option_bad_values():
    with pytest.raises(ConfigError, match="beta_schedule"):
        build_config(QIPOConfig, None, ["beta_schedule=cosine"])
    with pytest.raises(ConfigError, match="eval_sampler_method"):
        build_config(QIPOConfig, None, ["eval_sampler_method=rk4"])
    with pytest.raises(ConfigError, match="eval_sampler_steps"):
        build_config(QIPOConfig, None, ["eval_sampler_steps=0"])


# the keys the session-7 change of defaults moved: (v2 = today's defaults, v1 = the built-in config qipo_v1)
V2 = {"beta": 30.0, "behaviour_steps": 500, "q_steps": 500, "improve_steps": 2500, "train.lr": 1e-3, "q_lr": 1e-3,
      "freeze_q": False, "train.ema_decay": 0.99, "policy_hidden": 64, "q_hidden": 64}
V1 = {"beta": 3.0, "behaviour_steps": 3000, "q_steps": 3000, "improve_steps": 2000, "train.lr": 3e-4, "q_lr": 3e-4,
      "freeze_q": True, "train.ema_decay": 0.995, "policy_hidden": 128, "q_hidden": 128}
RESULTS = Path(__file__).resolve().parents[3] / "experiments" / "results"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_defaults_are_the_measured_v2_setting():
    """QIPOConfig's defaults are the v2 setting of docs/efm_qipo.md ("Issue 19"), i.e. exactly the config of the
    committed 5-seed result qipo_compare_v2.json: its stored base config with the per-job beta (--variants) and
    width (--hidden) applied, key for key."""
    cfg = QIPOConfig()
    assert {k: _flat(cfg.to_dict())[k] for k in V2} == V2
    assert cfg.train.steps == 3500 and cfg.phase_ends == (500, 1000, 3500)
    res = json.loads((RESULTS / "qipo_compare_v2.json").read_text())
    ran = _flat(res["qipo_config"])
    ran.update(beta=json.loads(res["settings"]["variants"])[0]["beta"], policy_hidden=res["settings"]["hidden"],
               q_hidden=res["settings"]["hidden"], policy_depth=res["settings"]["depth"], q_depth=res["settings"]["depth"])
    mine = _flat(cfg.to_dict())
    assert set(ran) <= set(mine)
    # keys added to the config after that run: options whose default is the behaviour the run had (compile off)
    assert set(mine) - set(ran) == {"train.compile_scope"}
    assert {k: (mine[k], v) for k, v in ran.items() if mine[k] != v} == {}


def test_builtin_config_qipo_v1_restores_the_old_defaults():
    """`agm qipo train --config qipo_v1` is the v1 defaults: the moved keys take their old values, every other key
    equals today's default, and with a committed v1 result's phase lengths it gives that result's stored config."""
    from agm.methods.efm.qipo_run import load_qipo_config

    v1, v2 = _flat(load_qipo_config("qipo_v1").to_dict()), _flat(QIPOConfig().to_dict())
    assert {k: v1[k] for k in V1} == V1 and v1["train.steps"] == 8000
    assert {k for k in v1 if v1[k] != v2[k]} == set(V1) | {"train.steps"}
    res = json.loads((RESULTS / "qipo_compare.json").read_text())  # made with the v1 defaults and --k1/--k2/--k3 only
    s = res["settings"]
    assert s["set"] == []
    phases = [f"behaviour_steps={s['k1']}", f"q_steps={s['k2']}", f"improve_steps={s['k3']}"]
    cfg = _flat(load_qipo_config("qipo_v1", phases).to_dict())
    assert {k: (cfg[k], v) for k, v in _flat(res["qipo_config"]).items() if cfg[k] != v} == {}
    with pytest.raises(ConfigError, match="qipo_v1"):
        load_qipo_config("qipo_v0")
