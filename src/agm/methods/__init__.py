"""Methods: one folder each, thin layers over the core (paths, nets, samplers, training, metrics, data).

    agm/        AGM and its drift-only baseline (the flagship)
    bellman/    Bellman Diffusion: field matching, its dynamics, distributional RL vs C51
    efm/        energy-weighted flow matching and QIPO offline RL
    steering/   relative rewards, learning to sample (inverse RL), SOC / adjoint matching
    flowmaps/   generalised flow maps on Riemannian manifolds

House rules (docs/architecture.md): the core never imports a method; a method uses another only through
its public ``__init__``; only ``cli`` modules parse arguments. Each method folder with a ``cli.py``
defining ``register(subparsers)`` gets its ``agm <method> ...`` sub-commands automatically.
"""
METHODS = ("agm", "bellman", "efm", "steering", "flowmaps")
