"""Matrix products (fastnn/kernels/linalg.py): the affine layers' GEMMs, with the bias, and the layers' glue."""

from .common import KernelBenchmark


class MatMul(KernelBenchmark):
    cases = {"product": "matmul"}

    def time_product(self, *params):
        self.product()

    def peakmem_product(self, *params):
        self.product()


class AffineGlue(KernelBenchmark):
    """What a layer does around its GEMMs, at the same sizes: the product with its bias, the bias gradient, a
    residual connection's sum."""

    cases = {"affine": "matmul_bias", "bias_gradient": "column_sum", "residual": "add_into"}

    def time_affine(self, *params):
        self.affine()

    def time_bias_gradient(self, *params):
        self.bias_gradient()

    def time_residual(self, *params):
        self.residual()
