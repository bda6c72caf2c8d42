"""The same MLP, weights and batches in pyce and torch (float64): losses and weights agree.

Skipped when torch is not installed (it is an optional oracle, never required).
"""
import numpy as np
import pytest

import pyce.nn as nn
import pyce.optim as optim
import pyce.train as train

torch = pytest.importorskip("torch")


def _torch_mlp(model):
    layers = []
    for layer in model.layers:
        if isinstance(layer, nn.Linear):
            layers.append(torch.nn.Linear(layer.in_features, layer.out_features,
                                          dtype=torch.float64))
        elif isinstance(layer, nn.ELU):
            layers.append(torch.nn.ELU(layer.alpha))
        else:
            layers.append(torch.nn.ReLU())
    tm = torch.nn.Sequential(*layers)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return tm


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("activation", ["elu", "relu"])
def test_one_epoch_matches_torch(reduction, opt_name, activation):
    rng = np.random.default_rng(0)
    n, batch = 200, 32
    x = rng.standard_normal((n, 20))
    y = rng.integers(0, 5, n)
    model = nn.mlp([20, 24, 16, 5], activation=activation, dtype=np.float64, rng=1)
    tm = _torch_mlp(model)
    lr = 0.05 if reduction == "mean" else 0.05 / batch
    if opt_name == "sgd":
        opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3)
        topt = torch.optim.SGD(tm.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3)
    else:
        opt = optim.Adam(model.parameters(), lr=lr * 0.1, weight_decay=1e-3)
        topt = torch.optim.Adam(tm.parameters(), lr=lr * 0.1, weight_decay=1e-3)
    hist = train.fit(model, nn.CrossEntropyLoss(reduction=reduction), opt, x, y, epochs=1,
                     batch_size=batch, seed=5, verbose=0)

    tloss = torch.nn.CrossEntropyLoss(reduction=reduction)
    perm = np.random.default_rng(5).permutation(n)  # fit's documented batch order
    torch_losses = []
    for s in range(0, n, batch):
        idx = perm[s:s + batch]
        topt.zero_grad()
        loss = tloss(tm(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
        loss.backward()
        topt.step()
        torch_losses.append(loss.item())
    np.testing.assert_allclose(hist.step_losses, torch_losses, rtol=1e-9)
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), rtol=1e-9, atol=1e-12)
