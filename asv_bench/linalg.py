"""Matrix product (fastnn/kernels/linalg.py): the affine layers' GEMMs."""

from .common import KernelBenchmark


class MatMul(KernelBenchmark):
    cases = {"product": "matmul"}

    def time_product(self, *params):
        self.product()

    def peakmem_product(self, *params):
        self.product()
