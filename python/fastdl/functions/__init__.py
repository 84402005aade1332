"""The autograd Functions, one module per op family (named as fastdl.ops' modules where the
family has one), each with ``forward`` and ``backward`` side by side. The engine that runs them
(Function, Tensor, backward) is fastdl.tensor; a family module does
``from ..tensor import Function, Tensor``.

    elementwise   Add, Mul, Pow, Exp, Log, Cast              (NumPy/CuPy arithmetic)
    shape         Sum, Reshape, Transpose, GetItem, ToDevice, Concat (reduce, rearrange, move)
    dense         MatMul, Linear                             (fastdl.ops kernels from here on)
    activation    ReLU, Sigmoid, Tanh, GELU
    softmax       Softmax, LogSoftmax
    loss          CrossEntropy, MSELoss, BCEWithLogits
    dropout       Dropout
    conv          Conv2d, ConvTranspose2d
    pool          MaxPool2d, AvgPool2d, AdaptiveAvgPool2d
    pad           Pad2d
    norm          BatchNorm, LayerNorm
    rnn           RNNCell, LSTMCell, LSTM
    embedding     Embedding
    attention     Attention, HeadsAttention                  (issue 11)

Tensor's operators and methods run elementwise, shape, MatMul, the activations and softmax;
fastdl.nn.functional runs Linear, the losses, Dropout and the conv, pool and norm Functions
(and the activations and softmax too).
"""

from .elementwise import *  # noqa: F401,F403
from .elementwise import __all__ as _elementwise
from .shape import *  # noqa: F401,F403
from .shape import __all__ as _shape
from .dense import *  # noqa: F401,F403
from .dense import __all__ as _dense
from .activation import *  # noqa: F401,F403
from .activation import __all__ as _activation
from .softmax import *  # noqa: F401,F403
from .softmax import __all__ as _softmax
from .loss import *  # noqa: F401,F403
from .loss import __all__ as _loss
from .dropout import *  # noqa: F401,F403
from .dropout import __all__ as _dropout
from .conv import *  # noqa: F401,F403
from .conv import __all__ as _conv
from .pool import *  # noqa: F401,F403
from .pool import __all__ as _pool
from .norm import *  # noqa: F401,F403
from .norm import __all__ as _norm

# ---- rnn family (issue 10) ----
from .rnn import *  # noqa: F401,F403
from .rnn import __all__ as _rnn
from .embedding import *  # noqa: F401,F403
from .embedding import __all__ as _embedding
# ---- end rnn family ----

__all__ = [*_elementwise, *_shape, *_dense, *_activation, *_softmax, *_loss, *_dropout, *_conv,
           *_pool, *_norm, *_rnn, *_embedding]

# ---- pad (Conv2d's padding_mode, issue 9) ----
from .pad import *  # noqa: F401,F403,E402
from .pad import __all__ as _pad  # noqa: E402

__all__ += _pad

from .attention import *  # noqa: F401,F403,E402
from .attention import __all__ as _attention  # noqa: E402

__all__ += _attention
