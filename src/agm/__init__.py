"""agm: generative models that pair a vector field with a scalar potential, and their use in RL."""
__version__ = "0.1.0"
