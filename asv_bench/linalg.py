"""Matrix products (fastnn/kernels/linalg.py): the affine layers' GEMMs, with the bias, and their bias gradients."""

from .common import KernelBenchmark


class MatMul(KernelBenchmark):
    cases = {"product": "matmul"}

    def time_product(self, *params):
        self.product()

    def peakmem_product(self, *params):
        self.product()


class MatMulBias(KernelBenchmark):
    cases = {"affine": "matmul_bias"}

    def time_affine(self, *params):
        self.affine()


class ColumnSum(KernelBenchmark):
    cases = {"bias_gradient": "column_sum"}

    def time_bias_gradient(self, *params):
        self.bias_gradient()


class AddInto(KernelBenchmark):
    cases = {"residual": "add_into"}

    def time_residual(self, *params):
        self.residual()
