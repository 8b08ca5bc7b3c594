"""Deep Learning from Scratch 2's ``common/optimizer.py``: SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam.

These are :mod:`fastnn.optim`'s classes, whose constructors take the book's arguments in the book's order with the
book's defaults (``lr=0.01``, ``momentum=0.9``, ``decay_rate=0.99``, Adam's ``lr=0.001, beta1=0.9, beta2=0.999``,
``1e-7`` added to the root, Adam in the paper's efficient form) and whose ``update(params, grads)`` takes the
book's lists: arrays updated in place, state kept per list position, ``lr`` re-read on every update (a script's
``optimizer.lr = lr / 4`` takes effect at the next step), each step one fused kernel per parameter.

Difference from the book: ``Nesterov`` is the update of the paper the book cites (arXiv:1212.0901) and of the
first volume, ``p += mu*mu*v - (1 + mu)*lr*g`` with the velocity *before* this step's update; DLFS-2's class
updates ``v`` first and adds ``mu*mu`` times the new velocity (``tests/compat/test_dlfs2_layers.py`` pins the
fastnn form).
"""

from __future__ import annotations

from ...optim import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]
