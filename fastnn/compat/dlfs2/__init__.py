"""Deep Learning from Scratch 2 on fastnn kernels (package contents owned by the dlfs2 work; see its modules)."""
