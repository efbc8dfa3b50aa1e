"""megq.data: datasets, DataLoader, batch transforms and a progress helper (numpy only; Pillow/tqdm optional)."""
from . import transforms
from .dataloader import DataLoader
from .dataset import ArrayDataset, Dataset
from .datasets import FASHION_MNIST_DIR, FashionMNIST, ImageFolder, digits, load_digits
from .progress import progress

__all__ = ["ArrayDataset", "DataLoader", "Dataset", "FASHION_MNIST_DIR", "FashionMNIST", "ImageFolder", "digits",
           "load_digits", "progress", "transforms"]
