"""The same MLP, weights and batches in pyce and torch (float64): losses and weights agree.

Skipped when torch is not installed (it is an optional oracle, never required).
"""
import numpy as np
import pytest

import pyce.nn as nn
import pyce.optim as optim
import pyce.train as train

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _torch_on_one_thread():
    """torch is an oracle here; its threads only stall on a shared machine. Set for
    each test and restored after: torch.set_num_threads also sets the OpenMP runtime's
    default, which pyce's kernels share when both load the same libgomp, so a
    module-level call would leave every later test of the session on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
@pytest.mark.parametrize("opt_name", ["sgd", "sgd-dampening", "sgd-nesterov", "adam"])
@pytest.mark.parametrize("activation", ["elu", "relu"])
def test_three_epochs_match_torch(reduction, opt_name, activation):
    rng = np.random.default_rng(0)
    n, batch = 200, 32
    x = rng.standard_normal((n, 20))
    y = rng.integers(0, 5, n)
    model = nn.mlp([20, 24, 16, 5], activation=activation, dtype=np.float64, rng=1)
    tm = _torch_mlp(model)
    lr = 0.05 if reduction == "mean" else 0.05 / batch
    if opt_name.startswith("sgd"):
        # positional, in torch's order: lr, momentum, dampening, weight_decay, nesterov
        args = {"sgd": (lr, 0.9, 0.0, 1e-3, False), "sgd-dampening": (lr, 0.9, 0.3, 1e-3, False),
                "sgd-nesterov": (lr, 0.9, 0.0, 1e-3, True)}[opt_name]
        opt = optim.SGD(model.parameters(), *args)
        topt = torch.optim.SGD(tm.parameters(), *args)
    else:
        opt = optim.Adam(model.parameters(), lr=lr * 0.1, weight_decay=1e-3)
        topt = torch.optim.Adam(tm.parameters(), lr=lr * 0.1, weight_decay=1e-3)
    epochs = 3
    hist = train.fit(model, nn.CrossEntropyLoss(reduction=reduction), opt, x, y, epochs=epochs,
                     batch_size=batch, seed=5, verbose=0)

    tloss = torch.nn.CrossEntropyLoss(reduction=reduction)
    order = np.random.default_rng(5)  # fit's documented batch order
    torch_losses = []
    for _ in range(epochs):
        perm = order.permutation(n)
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
