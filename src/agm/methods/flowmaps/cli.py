"""``agm flowmaps train|sample|eval``: generalised flow maps on Riemannian manifolds (GFM, arXiv 2510.21608), the
grammar generated from the recipe by :mod:`agm.command_line` (docs/flowmaps.md). Imports stay inside functions."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from agm.command_line import add_method
    from agm.methods.flowmaps.run import RECIPE

    add_method(sub, RECIPE, help="generalised flow maps on the sphere, flat torus, SO(3) and hyperbolic plane (few-step sampling)")
