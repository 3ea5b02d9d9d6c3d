"""Data: built-in toy sets (agm.data.toy) and user files (agm.data.files)."""
from agm.data.files import load_array, save_array, split, validate_array
from agm.data.toy import TOY_1D, TOY_2D, make_toy, toy_names

__all__ = ["TOY_1D", "TOY_2D", "load_array", "make_toy", "save_array", "split", "toy_names", "validate_array"]
