"""pyce's trainer: a small NumPy MLP trainer on top of the loss kernels.

    nn.py           layers (Module protocol, Linear, ELU, ReLU, Sequential) and
                    losses (Loss, CrossEntropyLoss)
    optim.py        SGD and Adam (torch.optim's rules, fused C steps)
    fit.py          fit(): the epoch loop, evaluation, divergence stop, Ctrl-C
    history.py      History, EarlyStopping, DivergenceError, TrainingInterrupted
    checkpoints.py  checkpoint files (exact resume) and model files
    gradcheck.py    finite-difference check of a model's gradients

The public import paths are pyce.nn, pyce.optim, pyce.train and
pyce.gradcheck; the kernels are cext/pyce_trainer_kernels.c (module pyce._nnk).
"""
