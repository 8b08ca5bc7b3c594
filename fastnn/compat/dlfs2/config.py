"""Deep Learning from Scratch 2's ``common/config.py``: ``GPU = False`` (fastnn runs on the CPU; scripts that set
``config.GPU = True`` for CuPy still run, on the CPU)."""

GPU = False
