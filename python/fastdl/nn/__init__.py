"""fastdl.nn: Module and the layers, PyTorch's names, argument orders, parameter names, shapes
and default initialisation (DESIGN.md section 3)."""

from . import functional, init
from .conv import Conv2d, ConvTranspose2d
from .layers import (GELU, Dropout, Flatten, Identity, Linear, LogSoftmax, ReLU, Sigmoid, Softmax,
                     Tanh)
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import Module, ModuleList, Parameter, Sequential, StateDictError
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm
from .pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .embedding import Embedding  # issue 10: embedding and recurrent layers
from .rnn import LSTM, LSTMCell, RNNCell
from .transformer import (MultiheadAttention, PositionalEncoding,  # issue 11: transformer layers
                          TransformerEncoder, TransformerEncoderLayer)

__all__ = ["functional", "init", "Module", "Parameter", "Sequential", "ModuleList",
           "StateDictError", "Identity", "Linear", "ReLU", "Sigmoid", "Tanh", "Softmax",
           "LogSoftmax", "Flatten", "Dropout", "CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss",
           "Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "BatchNorm1d", "BatchNorm2d",
           "Embedding", "RNNCell", "LSTMCell", "LSTM", "LayerNorm", "GELU",
           "MultiheadAttention", "PositionalEncoding", "TransformerEncoderLayer",
           "TransformerEncoder"]
