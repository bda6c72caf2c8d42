"""pyce.nn: the layers and losses of pyce's trainer (defined in pyce.trainer.nn).

Linear, ELU, ReLU, Sequential and the Module protocol they follow
(forward, backward(grad, *, input_grad=True), parameters, to(dtype), ...),
Loss and CrossEntropyLoss, mlp(), kaiming_gain(), Parameter.
"""
from pyce.trainer.nn import (CrossEntropyLoss, ELU, Linear, Loss, Module, Parameter, ReLU,
                             Sequential, from_spec, kaiming_gain, mlp)

__all__ = ["Parameter", "Module", "Linear", "ELU", "ReLU", "Sequential", "Loss",
           "CrossEntropyLoss", "mlp", "kaiming_gain", "from_spec"]
