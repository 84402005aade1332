"""fastdl.nn: Module and the layers, PyTorch's names, argument orders, parameter names, shapes
and default initialisation (DESIGN.md section 3)."""

from . import functional, init
from .layers import Dropout, Flatten, Identity, Linear, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import Module, ModuleList, Parameter, Sequential, StateDictError

__all__ = ["functional", "init", "Module", "Parameter", "Sequential", "ModuleList",
           "StateDictError", "Identity", "Linear", "ReLU", "Sigmoid", "Tanh", "Softmax",
           "LogSoftmax", "Flatten", "Dropout", "CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss"]
