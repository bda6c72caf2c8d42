"""Checkpoint files (resume a fit exactly) and model files (a trained network).

Both are .npz archives written atomically (a crash mid-write never leaves a
truncated file behind) and read with allow_pickle=False.
"""
import json
import os

import numpy as np

from pyce.trainer.history import History
from pyce.trainer.nn import from_spec

__all__ = ["save_checkpoint", "load_checkpoint", "restore_checkpoint", "save_model",
           "load_model"]

_CKPT_FORMAT = "pyce-checkpoint-1"


def _write_npz(path, arrays):
    """Write atomically: a crash mid-write never leaves a truncated file at `path`."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def model_spec(model):
    """The layer list of a pyce.nn Sequential (JSON-ready), or None for another model."""
    return model._spec() if hasattr(model, "_spec") else None


def _model_dtype(model):
    params = model.parameters()
    if not params:
        raise ValueError("the model has no parameters")
    return params[0].data.dtype


def save_checkpoint(path, model, optimizer, rng, history, epoch, batch_size, es=None):
    """Write model, optimizer state, epoch, Generator state and History to an .npz.

    path: file to write; model, optimizer: their state_dicts are stored;
    rng: the numpy Generator that shuffles the epochs; history: a History;
    epoch: the number of finished epochs; batch_size: checked on resume;
    es: the early-stopping state (or None). Returns None.
    """
    arrays = {"format": np.array(_CKPT_FORMAT), "epoch": np.array(epoch),
              "batch_size": np.array(batch_size),
              "rng_state": np.array(json.dumps(rng.bit_generator.state)),
              "history": np.array(history._to_json()),
              "step_losses": np.array(history.step_losses, np.float64),
              "spec": np.array(json.dumps(model_spec(model)))}
    for k, v in model.state_dict().items():
        arrays["model/" + k] = v
    for k, v in optimizer.state_dict().items():
        arrays["optim/" + k] = np.asarray(v)
    if es is not None:
        arrays["early"] = np.array(json.dumps({"best": es.best, "best_epoch": es.best_epoch,
                                               "wait": es.wait}))
        for k, v in (es.best_weights or {}).items():
            arrays["best/" + k] = v
    _write_npz(path, arrays)


def load_checkpoint(path):
    """The checkpoint at `path` as a dict: epoch, batch_size, rng_state (dict),
    history (History), spec, model (state_dict), optim (state_dict), early
    (dict or None), best (state_dict or None). ValueError if it is not one."""
    with np.load(os.fspath(path), allow_pickle=False) as z:
        if "format" not in z.files or str(z["format"]) != _CKPT_FORMAT:
            raise ValueError(f"{path} is not a pyce checkpoint")
        out = {"epoch": int(z["epoch"]), "batch_size": int(z["batch_size"]),
               "rng_state": json.loads(str(z["rng_state"])),
               "history": History._from_json(str(z["history"]), z["step_losses"]),
               "spec": json.loads(str(z["spec"])),
               "model": {k[6:]: z[k] for k in z.files if k.startswith("model/")},
               "optim": {k[6:]: z[k] for k in z.files if k.startswith("optim/")},
               "early": json.loads(str(z["early"])) if "early" in z.files else None,
               "best": {k[5:]: z[k] for k in z.files if k.startswith("best/")} or None}
    return out


def restore_checkpoint(path, model, optimizer, rng, batch_size, es):
    """Load the checkpoint at `path` into model, optimizer, rng (its state) and
    es (an EarlyState), after checking that batch_size and the architecture
    match; returns (finished epochs, History)."""
    ck = load_checkpoint(path)
    if ck["batch_size"] != batch_size:
        raise ValueError(f"resume: the checkpoint was trained with batch_size="
                         f"{ck['batch_size']}, this call has batch_size={batch_size}; "
                         f"the batches would differ")
    if ck["spec"] is not None and ck["spec"] != model_spec(model):
        raise ValueError(f"resume: the checkpoint's model {ck['spec']} is not this model "
                         f"{model_spec(model)}")
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optim"])
    rng.bit_generator.state = ck["rng_state"]
    if ck["early"] is not None:
        es.best, es.best_epoch, es.wait = (ck["early"]["best"], ck["early"]["best_epoch"],
                                           ck["early"]["wait"])
        es.best_weights = ck["best"]
    return ck["epoch"], ck["history"]


def save_model(path, model):
    """Save a Sequential to an .npz at `path`: its state_dict arrays under their
    PyTorch keys ('0.weight', ...) plus '__spec__' (the layer list, JSON),
    '__dtype__', and '__sizes__' / '__activation__' when it was built by
    pyce.nn.mlp. Returns None."""
    arrays = dict(model.state_dict())
    arrays["__spec__"] = np.array(json.dumps(model_spec(model)))
    arrays["__dtype__"] = np.array(_model_dtype(model).name)
    if getattr(model, "sizes", None) is not None:
        arrays["__sizes__"] = np.array(model.sizes, np.int64)
        arrays["__activation__"] = np.array(model.activation)
    _write_npz(path, arrays)


def load_model(path):
    """The Sequential written by save_model at `path`, with its weights and dtype."""
    with np.load(os.fspath(path), allow_pickle=False) as z:
        if "__spec__" not in z.files:
            raise ValueError(f"{path} was not written by pyce.train.save_model (no __spec__)")
        spec = json.loads(str(z["__spec__"]))
        dtype = np.dtype(str(z["__dtype__"]))
        model = from_spec(spec, dtype)
        model.load_state_dict({k: z[k] for k in z.files if not k.startswith("__")})
        if "__sizes__" in z.files:
            model.sizes = [int(s) for s in z["__sizes__"]]
            model.activation = str(z["__activation__"])
    return model
