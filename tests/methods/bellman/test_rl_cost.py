"""The cheap Bellman Diffusion update and the C51 options: the factored field evaluations equal the plain
forward pass, the grid interpolation is exact where it must be, the acting cache follows the parameters, Adam's
epsilon follows CleanRL's 0.01 / batch_size, and the loop records its training time."""
import pytest
import torch

from agm.errors import ConfigError
from agm.methods.bellman.rl import BDConfig, BellmanDiffusionAgent, C51Agent, C51Config
from agm.methods.bellman.rl.bellman_diffusion import ReturnField, interp_on_grid
from agm.methods.bellman.rl.train import LoopConfig, train_agent


def _batch(B=16, D=4, A=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(B, D, generator=g), "next_obs": torch.randn(B, D, generator=g),
            "actions": torch.randint(0, A, (B,), generator=g), "rewards": torch.rand(B, generator=g),
            "terminated": (torch.rand(B, generator=g) < 0.3).float()}


def test_factored_field_equals_forward():
    torch.manual_seed(0)
    net = ReturnField(4, 3, (32, 16), n_cos=8)
    obs, a = torch.randn(5, 4), torch.tensor([0, 2, 1, 1, 0])
    z_shared, z_each = torch.linspace(-1, 1, 7), torch.rand(5, 7) * 2 - 1
    ph = net.phi(obs)
    full_shared = net(obs, z_shared.expand(5, 7))  # (B, M, A)
    torch.testing.assert_close(net.at_action(ph, net.embed_z(z_shared), a), full_shared[torch.arange(5), :, a])
    torch.testing.assert_close(net.all_actions(ph, net.embed_z(z_shared)), full_shared)
    torch.testing.assert_close(net.at_action(ph, net.embed_z(z_each), a), net(obs, z_each)[torch.arange(5), :, a])


def test_interp_on_grid_is_exact_for_linear_functions_and_zero_outside():
    grid = torch.linspace(-1.1, 1.1, 23)
    vals = (2.0 * grid - 0.3)[None].repeat(2, 1)
    u = torch.tensor([[-1.1, -0.37, 0.0, 0.951, 1.1], [-1.2, 1.15, 0.5, -0.5, 0.2]])
    out = interp_on_grid(vals, u, -1.1, 1.1)
    inside = (u >= -1.1) & (u <= 1.1)
    torch.testing.assert_close(out[inside], (2.0 * u - 0.3)[inside], atol=1e-6, rtol=0)
    assert (out[~inside] == 0).all()


def test_grid_target_reads_the_same_field_as_the_exact_target():
    # on the grid points themselves, interpolation returns the network's own values
    torch.manual_seed(1)
    net = ReturnField(4, 2, (32, 16), n_cos=8)
    grid = torch.linspace(-1.1, 1.1, 51)
    obs = torch.randn(3, 4)
    with torch.no_grad():
        vals = net.on_grid(obs, grid)[:, :, 1]
        u = grid[[0, 7, 25, 50]].expand(3, 4)
        torch.testing.assert_close(interp_on_grid(vals, u, -1.1, 1.1), net(obs, u)[:, :, 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("extra", [{}, {"target_eval": "exact"}, {"shared_points": False}, {"points": "target"}, {"action_selection": "double"}])
def test_every_update_path_runs_and_the_acting_cache_follows_the_parameters(extra):
    torch.manual_seed(0)
    agent = BellmanDiffusionAgent(4, 3, BDConfig(v_min=0.0, v_max=1.0, n_points=8, hidden=(32, 16), lr=1e-2, **extra))
    obs = torch.randn(6, 4)
    with torch.no_grad():
        q0 = agent.q_values(obs)  # fills the cache
    loss = agent.update(_batch())
    assert loss == loss and loss >= 0
    with torch.no_grad():
        q1 = agent.q_values(obs)  # must see the new parameters
    fresh = agent.q_from_fields(agent.f.all_actions(agent.f.phi(obs), agent.f.embed_z(agent.grid))).detach()
    torch.testing.assert_close(q1, fresh)
    assert not torch.allclose(q0, q1)
    agent.f.load_state_dict(agent.f_tgt.state_dict())  # resume-style in-place load: the cache must follow too
    with torch.no_grad():
        torch.testing.assert_close(agent.q_values(obs), agent.q_values(obs, target=True))


def test_c51_adam_eps_and_clamped_loss():
    assert C51Agent(4, 2, C51Config(), batch_size=128).opt.param_groups[0]["eps"] == pytest.approx(0.01 / 128)
    assert C51Agent(4, 2, C51Config(adam_eps=0.01 / 32)).opt.param_groups[0]["eps"] == pytest.approx(0.01 / 32)
    # while no probability is clamped (a fresh net gives p ~ 1/101), the two losses agree
    torch.manual_seed(0)
    a1 = C51Agent(4, 3, C51Config(v_min=0.0, v_max=1.0))
    torch.manual_seed(0)
    a2 = C51Agent(4, 3, C51Config(v_min=0.0, v_max=1.0, loss="clamped_log"))
    b = _batch()
    assert a1.update(b) == pytest.approx(a2.update(b), rel=1e-6)
    with pytest.raises(ConfigError, match="loss"):
        C51Config(loss="mse")
    with pytest.raises(ConfigError, match="adam_eps"):
        C51Config(adam_eps=0.0)
    with pytest.raises(ConfigError, match="target_eval"):
        BDConfig(target_eval="spline")


def test_loop_records_training_time():
    lc = LoopConfig(total_steps=300, learning_starts=100, batch_size=16, buffer_size=300, eval_every=150, eval_episodes=1)
    _, rec = train_agent("c51", "CartPole-v1", 0, lc, {"v_min": 0.0, "v_max": 100.0, "hidden": (16, 16)})
    assert len(rec["episode_times"]) == len(rec["episodes"]) and len(rec["eval_times"]) == len(rec["evals"]) == 2
    cpu = [c for c, _ in rec["episode_times"]]
    assert all(b >= a for a, b in zip(cpu, cpu[1:])) and 0 <= cpu[-1] <= rec["train_cpu_s"]
