"""Functional ops: arrays in, arrays out. Each ``*_backward`` returns gradients in argument order.

NumPy arrays run on the CPU kernels (fastdl._core), CuPy arrays on the CUDA kernels
(fastdl._cuda). See DESIGN.md section 3 for the contract.
"""

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
from .elementwise import *  # noqa: F401,F403
from .elementwise import __all__ as _elementwise
from .conv import *  # noqa: F401,F403
from .conv import __all__ as _conv
from .pool import *  # noqa: F401,F403
from .pool import __all__ as _pool
from .norm import *  # noqa: F401,F403
from .norm import __all__ as _norm

from .optim import *  # noqa: F401,F403
from .optim import __all__ as _optim

# ---- embedding (issue 10) ----
from .embedding import *  # noqa: F401,F403
from .embedding import __all__ as _embedding

# ---- rnn (branch rnn) ----
from .rnn import *  # noqa: F401,F403
from .rnn import __all__ as _rnn
# ---- end rnn ----

__all__ = [*_dense, *_activation, *_softmax, *_loss, *_dropout, *_elementwise, *_conv, *_pool,
           *_norm, *_optim]
__all__ += [*_embedding]
__all__ += _rnn  # rnn (branch rnn)

# ---- pad (Conv2d's padding_mode, issue 9) ----
from .pad import *  # noqa: F401,F403,E402
from .pad import __all__ as _pad  # noqa: E402

__all__ += _pad

# ---- attention (issue 11) ----
from .attention import *  # noqa: F401,F403,E402
from .attention import __all__ as _attention  # noqa: E402
# ---- end attention ----
__all__ += _attention  # attention (issue 11)
