"""pyce.train: fit() and what it records, checkpoints and model files
(defined in pyce.trainer.fit, .history and .checkpoints)."""
from pyce.trainer.checkpoints import load_checkpoint, load_model, save_checkpoint, save_model
from pyce.trainer.fit import divergence_message, evaluate, fit
from pyce.trainer.history import (DivergenceError, EarlyStopping, History,
                                  TrainingInterrupted)

__all__ = ["fit", "evaluate", "divergence_message", "History", "EarlyStopping",
           "DivergenceError", "TrainingInterrupted", "save_model", "load_model",
           "save_checkpoint", "load_checkpoint"]
