"""Methods: thin layers that combine paths, networks, objectives and samplers into something trainable."""
from agm.methods.agm import AGM, build_method, generate

__all__ = ["AGM", "build_method", "generate"]
