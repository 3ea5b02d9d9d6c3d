"""Networks: time embeddings, a time-conditioned MLP and U-Net, and scalar potential heads sized by a budget."""
from agm.nets.embeddings import SinusoidalEmbedding
from agm.nets.mlp import MLP, TimeMLP
from agm.nets.potential import PotentialMLP, build_potential, count_params
from agm.nets.unet import UNet

__all__ = ["SinusoidalEmbedding", "MLP", "TimeMLP", "PotentialMLP", "build_potential", "count_params", "UNet"]
