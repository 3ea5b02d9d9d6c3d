"""``agm steering ...``: steering pretrained flow models (a CLI module: it parses arguments; imports are lazy).

    agm steering train --out DIR [base.run=BASE] [key=value ...]   SOC / adjoint-matching fine-tuning (main task)
    agm steering train --resume DIR
    agm steering sample --run DIR --n N --out FILE.npy             ODE samples of the fine-tuned velocity
    agm steering eval --run DIR                                    metrics against the exact tilted optimum
    agm steering base --out DIR [key=value ...]                    a base flow model to fine-tune (base.run=DIR)
    agm steering reward --out DIR [key=value ...]                  relative reward extraction (+ reward-sample, reward-eval)
    agm steering learn-sampler --out DIR [key=value ...]           learned sampler schedule (+ learn-sampler-sample, -eval)

Every command that trains writes a run folder (config.yaml, run.json, metrics.jsonl, checkpoints/), refuses a
non-empty --out unless --overwrite, and resumes with --resume DIR. See docs/steering.md.
"""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from agm.command_line import add_eval, add_method, add_sample, add_train
    from agm.methods.steering.run import FLOW_RECIPE, REWARD_RECIPE, SAMPLER_RECIPE, SOC_RECIPE

    msub = add_method(sub, SOC_RECIPE, help="steer pretrained flow models: SOC / adjoint-matching fine-tuning, relative rewards, learned samplers")
    add_train(msub, FLOW_RECIPE, name="base", help="train a base flow-matching model (a run folder for 'agm steering train base.run=DIR')")
    add_train(msub, REWARD_RECIPE, name="reward", data_key=None,
              help="relative reward extraction from a base and an expert flow model (Nuti et al. 2023): a new run folder, or --resume one")
    add_sample(msub, REWARD_RECIPE, name="reward-sample", help="samples of the base model steered by a reward run's grad rho")
    add_eval(msub, REWARD_RECIPE, name="reward-eval", help="steered samples of a reward run vs held-out expert data (writes eval.json)")
    add_train(msub, SAMPLER_RECIPE, name="learn-sampler",
              help="learn a sampler schedule of a frozen flow model by inverse RL (Bourdrez et al. 2026): a new run folder, or --resume one")
    add_sample(msub, SAMPLER_RECIPE, name="learn-sampler-sample", help="samples with a learn-sampler run's greedy schedule")
    add_eval(msub, SAMPLER_RECIPE, name="learn-sampler-eval", help="greedy-schedule samples of a learn-sampler run vs held-out data (writes eval.json)")
