"""Offline data sets (issue 5 item 4): D4RL / Minari / npz loaders from local files, built-in data, bad input.

Ground truth here is exact: arrays written by hand are read back bit for bit, and episode returns / transition
reconstructions are checked against sums computed independently in the test.
"""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from agm.errors import ConfigError, DataError
from agm.methods.efm import (
    OfflineDataset,
    check_env_compatible,
    generate_dataset,
    load_d4rl_hdf5,
    load_minari,
    load_npz,
    load_offline_dataset,
    normalized_score,
)


def _h5py():
    """h5py reads the D4RL / Minari files; it is requested as a dependency (see docs/efm_qipo.md), skip without it."""
    return pytest.importorskip("h5py")


def _arrays(n=7, obs_dim=3, act_dim=1, seed=0):
    rng = np.random.default_rng(seed)
    term = np.zeros(n, bool)
    tout = np.zeros(n, bool)
    term[2], tout[5] = True, True
    return {"observations": rng.standard_normal((n, obs_dim)).astype(np.float32),
            "actions": rng.uniform(-2, 2, (n, act_dim)).astype(np.float32),
            "rewards": rng.standard_normal(n).astype(np.float32),
            "next_observations": rng.standard_normal((n, obs_dim)).astype(np.float32),
            "terminals": term, "timeouts": tout}


def test_npz_roundtrip_and_episode_returns(tmp_path):
    a = _arrays()
    d = OfflineDataset(**a, meta={"env_id": "Pendulum-v1"})
    d2 = load_offline_dataset(d.save_npz(tmp_path / "d.npz"))
    for k, v in a.items():
        np.testing.assert_array_equal(d2.to_dict()[k], v)
    assert d2.meta == {"env_id": "Pendulum-v1"}
    r = a["rewards"].astype(np.float64)
    # episodes end at index 2 (terminal) and 5 (timeout); the trailing partial episode (index 6) is kept
    np.testing.assert_allclose(d2.episode_returns(), [r[:3].sum(), r[3:6].sum(), r[6:].sum()], rtol=1e-6)


def test_d4rl_hdf5_with_and_without_next_observations(tmp_path):
    h5py = _h5py()
    a = _arrays()
    f1 = tmp_path / "full.hdf5"
    with h5py.File(f1, "w") as f:
        for k, v in a.items():
            f[k] = v
    d = load_offline_dataset(f1)
    np.testing.assert_array_equal(d.next_observations.numpy(), a["next_observations"])
    assert d.meta["format"] == "d4rl"
    # without next_observations: rebuilt from observations[i+1], dropping time-limit ends (d4rl.qlearning_dataset)
    f2 = tmp_path / "flat.hdf5"
    with h5py.File(f2, "w") as f:
        for k in ("observations", "actions", "rewards", "terminals", "timeouts"):
            f[k] = a[k]
    d = load_d4rl_hdf5(f2)
    keep = [0, 1, 2, 3, 4]  # n-1 = 6 candidates, index 5 is a timeout -> dropped
    np.testing.assert_array_equal(d.observations.numpy(), a["observations"][keep])
    np.testing.assert_array_equal(d.next_observations.numpy(), a["observations"][[k + 1 for k in keep]])
    np.testing.assert_array_equal(d.terminals.numpy(), a["terminals"][keep])


def _write_minari(path, episodes):
    h5py = _h5py()
    with h5py.File(path, "w") as f:
        for i, (obs, act, rew, term, trunc) in enumerate(episodes):
            g = f.create_group(f"episode_{i}")
            g["observations"], g["actions"], g["rewards"] = obs, act, rew
            g["terminations"], g["truncations"] = term, trunc


def test_minari_folder_and_file(tmp_path):
    rng = np.random.default_rng(1)
    eps = []
    for T, terminal in ((4, True), (3, False)):
        eps.append((rng.standard_normal((T + 1, 2)), rng.standard_normal((T, 1)), rng.standard_normal(T),
                    np.array([False] * (T - 1) + [terminal]), np.array([False] * (T - 1) + [not terminal])))
    folder = tmp_path / "mujoco" / "toy-v0"
    (folder / "data").mkdir(parents=True)
    _write_minari(folder / "data" / "main_data.hdf5", eps)
    for src in (folder, folder / "data" / "main_data.hdf5"):
        d = load_offline_dataset(src)
        assert len(d) == 7 and d.meta["format"] == "minari" and d.meta["episodes"] == 2
        np.testing.assert_allclose(d.observations.numpy(), np.concatenate([eps[0][0][:-1], eps[1][0][:-1]]), rtol=1e-6)
        np.testing.assert_allclose(d.next_observations.numpy(), np.concatenate([eps[0][0][1:], eps[1][0][1:]]), rtol=1e-6)
        np.testing.assert_allclose(d.episode_returns(), [eps[0][2].sum(), eps[1][2].sum()], rtol=1e-5)
        assert d.terminals.tolist() == [False] * 3 + [True] + [False] * 3
        assert d.timeouts.tolist() == [False] * 6 + [True]


def test_bad_datasets_raise_clear_errors(tmp_path):
    a = _arrays()
    missing = {k: v for k, v in a.items() if k != "rewards"}
    with pytest.raises(DataError, match=r"missing keys \['rewards'\]"):
        OfflineDataset(**{**missing, "rewards": None})
    np.savez(tmp_path / "m.npz", **missing)
    with pytest.raises(DataError, match="missing keys"):
        load_npz(tmp_path / "m.npz")
    with pytest.raises(DataError, match="mismatched lengths"):
        OfflineDataset(**{**a, "actions": a["actions"][:-1]})
    bad = a["observations"].copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match=r"observations'\] has non-finite values \(first at row 3\)"):
        OfflineDataset(**{**a, "observations": bad})
    with pytest.raises(DataError, match="next_observations dim"):
        OfflineDataset(**{**a, "next_observations": a["next_observations"][:, :2]})
    with pytest.raises(DataError, match="does not exist.*D4RL"):
        load_offline_dataset(tmp_path / "nope.hdf5")
    (tmp_path / "x.csv").write_text("1")
    with pytest.raises(DataError, match="suffix '.csv'"):
        load_offline_dataset(tmp_path / "x.csv")
    h5py = _h5py()
    rng = np.random.default_rng(0)
    _write_minari(tmp_path / "short.hdf5", [(rng.standard_normal((3, 2)), rng.standard_normal((3, 1)), np.zeros(3),
                                             np.zeros(3, bool), np.zeros(3, bool))])
    with pytest.raises(DataError, match="3 observations for 3 actions"):
        load_minari(tmp_path / "short.hdf5")
    with h5py.File(tmp_path / "nokey.hdf5", "w") as f:
        f.create_group("episode_0")["observations"] = np.zeros((2, 2))
    with pytest.raises(DataError, match="missing keys"):
        load_offline_dataset(tmp_path / "nokey.hdf5")


def test_env_compatibility_checks():
    env = gym.make("Pendulum-v1")  # obs (3,), action (1,) in [-2, 2]
    a = _arrays(obs_dim=3, act_dim=1)
    check_env_compatible(OfflineDataset(**a), env)
    with pytest.raises(DataError, match=r"observations have shape \(N, 4\).*expects \(3,\)"):
        check_env_compatible(OfflineDataset(**_arrays(obs_dim=4)), env)
    with pytest.raises(DataError, match=r"actions have shape \(N, 2\)"):
        check_env_compatible(OfflineDataset(**_arrays(act_dim=2)), env)
    big = {**a, "actions": a["actions"] * 3}
    with pytest.raises(DataError, match="outside the environment bounds"):
        check_env_compatible(OfflineDataset(**big), env)


def test_generated_pendulum_dataset_is_consistent():
    d = generate_dataset("Pendulum-v1", 450, seed=3, reference_episodes=2)
    env = gym.make("Pendulum-v1")
    check_env_compatible(d, env)
    assert len(d) == 450 and d.meta["env_id"] == "Pendulum-v1"
    # Pendulum never terminates; every 200 steps is a time-limit cut, the last partial episode is cut at 450
    assert not d.terminals.any() and d.timeouts.nonzero().flatten().tolist() == [199, 399, 449]
    # next_observations[i] == observations[i+1] inside an episode
    inside = ~d.timeouts[:-1]
    np.testing.assert_array_equal(d.next_observations[:-1][inside].numpy(), d.observations[1:][inside].numpy())
    # the scripted expert must beat uniform random by a wide margin (measured ~-140 vs ~-1100 over 10 episodes)
    assert d.meta["ref_expert_return"] > d.meta["ref_random_return"] + 300
    assert normalized_score(d.meta["ref_expert_return"], d.meta["ref_random_return"], d.meta["ref_expert_return"]) == pytest.approx(100.0)
    np.testing.assert_allclose(d.episode_returns().sum(), d.rewards.double().sum().item(), rtol=1e-6)


def test_generate_dataset_with_a_policy_replays_it_exactly():
    """policy= replaces the mixture: every action is the policy's on that observation with the one rng of the seed
    (no behaviour draws), episode e starts from env.reset(seed=seed * 100_003 + e), and reference_episodes=0 skips
    the reference rollouts."""
    def policy(obs, rng):
        return np.clip(-0.5 * obs[2:3] + rng.standard_normal(1), -2, 2).astype(np.float32)

    d = generate_dataset("Pendulum-v1", 250, policy=policy, seed=7, reference_episodes=0)
    assert d.meta["mixture"] == {"policy": 1.0} and d.meta["behaviour_episodes"] == {"policy": 1}
    assert d.meta["ref_random_return"] is None and d.meta["ref_expert_return"] is None
    env, rng = gym.make("Pendulum-v1"), np.random.default_rng(7)
    obs, acts = [], []
    for e, n in ((0, 200), (1, 50)):
        o, _ = env.reset(seed=7 * 100_003 + e)
        for _ in range(n):
            a = policy(o, rng)
            obs.append(o)
            acts.append(a)
            o = env.step(a)[0]
    np.testing.assert_array_equal(d.observations.numpy(), np.asarray(obs, dtype=np.float32))
    np.testing.assert_array_equal(d.actions.numpy(), np.asarray(acts, dtype=np.float32))
    assert d.meta["behaviour_returns"]["policy"] == pytest.approx(float(d.rewards[:200].double().sum()), rel=1e-6)
    with pytest.raises(ConfigError, match="mixture= or policy="):
        generate_dataset("Pendulum-v1", 10, mixture={"random": 1.0}, policy=policy)


def test_generate_dataset_bad_input():
    with pytest.raises(ConfigError, match="env='Pendulum-v9'"):
        generate_dataset("Pendulum-v9", 10)
    with pytest.raises(ConfigError, match="mixture key='expert'.*did you mean"):
        generate_dataset("Pendulum-v1", 10, mixture={"expert": 1.0})
    with pytest.raises(ConfigError, match="n_transitions"):
        generate_dataset("Pendulum-v1", 0)
    with pytest.raises(ConfigError, match="ref_expert"):
        normalized_score(1.0, 2.0, 2.0)


def test_d4rl_file_in_the_published_layout(tmp_path):
    """A file laid out like D4RL's hopper-medium-v2.hdf5: the five flat arrays (float32 observations / actions /
    rewards, bool terminals / timeouts) plus the groups D4RL also ships (infos/qpos, infos/qvel,
    infos/action_log_probs, metadata/...), no next_observations (as in the *-v0 files; rebuilt as in
    d4rl.qlearning_dataset: a transition whose successor starts a new episode after a timeout is dropped, and the
    file's last row has no successor). Also terminals stored as float 0/1 (older files)."""
    h5py = _h5py()
    rng = np.random.default_rng(3)
    n, od, ad = 9, 11, 3
    obs = rng.standard_normal((n, od)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, ad)).astype(np.float32)
    rew = rng.standard_normal(n).astype(np.float32)
    term = np.zeros(n, bool)
    tout = np.zeros(n, bool)
    term[3], tout[6] = True, True
    for dtype in (bool, np.float32):
        path = tmp_path / f"hopper-medium-{dtype.__name__}.hdf5"
        with h5py.File(path, "w") as f:
            f["observations"], f["actions"], f["rewards"] = obs, act, rew
            f["terminals"], f["timeouts"] = term.astype(dtype), tout
            f["infos/qpos"] = rng.standard_normal((n, 6))
            f["infos/qvel"] = rng.standard_normal((n, 6))
            f["infos/action_log_probs"] = rng.standard_normal(n)
            f["metadata/algorithm"] = np.bytes_("SAC")
            f["metadata/policy/fc0/weight"] = rng.standard_normal((4, od))
        d = load_offline_dataset(path)
        keep = [0, 1, 2, 3, 4, 5, 7]  # rows 0..n-2, minus the timeout row 6; the last row 8 has no successor
        np.testing.assert_array_equal(d.observations.numpy(), obs[keep])
        np.testing.assert_array_equal(d.next_observations.numpy(), obs[[k + 1 for k in keep]])
        np.testing.assert_array_equal(d.actions.numpy(), act[keep])
        np.testing.assert_array_equal(d.rewards.numpy(), rew[keep])
        assert d.terminals.tolist() == [k == 3 for k in keep] and not d.timeouts.any()
        assert (d.obs_dim, d.act_dim, d.meta["format"]) == (od, ad, "d4rl")


def test_minari_dataset_in_the_published_layout(tmp_path):
    """A folder laid out like `minari download mujoco/hopper/medium-v0`: <dataset>/data/main_data.hdf5 with groups
    episode_0 .. episode_11 (attributes id, total_steps, seed; datasets observations (T+1), actions, rewards,
    terminations, truncations; an infos group) and <dataset>/data/metadata.json whose env_spec (a JSON string) names
    the environment. Episodes are read in numeric order (episode_10 after episode_9), the env id is taken from the
    metadata, and every transition is checked against the arrays written."""
    h5py = _h5py()
    rng = np.random.default_rng(4)
    folder = tmp_path / "mujoco" / "hopper" / "medium-v0"
    (folder / "data").mkdir(parents=True)
    eps = []
    with h5py.File(folder / "data" / "main_data.hdf5", "w") as f:
        for i in range(12):
            T = 2 + i % 3
            ep = (rng.standard_normal((T + 1, 11)), rng.uniform(-1, 1, (T, 3)), rng.standard_normal(T),
                  np.arange(T) == T - 1 if i % 2 else np.zeros(T, bool), np.arange(T) == T - 1 if not i % 2 else np.zeros(T, bool))
            eps.append(ep)
            g = f.create_group(f"episode_{i}")
            g.attrs["id"], g.attrs["total_steps"], g.attrs["seed"] = i, T, 100 + i
            g["observations"], g["actions"], g["rewards"], g["terminations"], g["truncations"] = ep
            g.create_group("infos")["success"] = np.zeros(T, bool)
    (folder / "data" / "metadata.json").write_text(json.dumps({
        "dataset_id": "mujoco/hopper/medium-v0", "total_episodes": 12, "total_steps": sum(len(e[2]) for e in eps),
        "env_spec": json.dumps({"id": "Hopper-v5", "entry_point": "gymnasium.envs.mujoco.hopper_v5:HopperEnv", "max_episode_steps": 1000})}))
    d = load_offline_dataset(folder)
    assert d.meta["env_id"] == "Hopper-v5" and d.meta["episodes"] == 12
    cat = lambda j, sl: np.concatenate([e[j][sl] if sl is not None else e[j] for e in eps])  # noqa: E731
    np.testing.assert_allclose(d.observations.numpy(), cat(0, slice(None, -1)), rtol=1e-6)
    np.testing.assert_allclose(d.next_observations.numpy(), cat(0, slice(1, None)), rtol=1e-6)
    np.testing.assert_allclose(d.actions.numpy(), cat(1, None), rtol=1e-6)
    np.testing.assert_allclose(d.episode_returns(), [e[2].sum() for e in eps], rtol=1e-5)
    assert d.terminals.tolist() == cat(3, None).tolist() and d.timeouts.tolist() == cat(4, None).tolist()
