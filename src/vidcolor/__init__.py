"""vidcolor: colorize black-and-white video from a color reference image."""

from vidcolor.errors import VidcolorError

__version__ = "0.1.0"

__all__ = ["Colorizer", "VidcolorError", "__version__"]


def __getattr__(name: str):
    # Lazy: importing the package (for the CLI's --help or the errors) must not import torch.
    if name == "Colorizer":
        from vidcolor.colorizer import Colorizer

        return Colorizer
    raise AttributeError(name)
