"""pyce.optim: SGD and Adam with torch.optim's rules (defined in pyce.trainer.optim)."""
from pyce.trainer.optim import SGD, Adam, Optimizer

__all__ = ["Optimizer", "SGD", "Adam"]
