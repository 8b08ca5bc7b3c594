"""Fused optimizer steps, in place (fastnn/kernels/optimizers.py); torch runs its fused CPU optimizers."""

from .common import KernelBenchmark


class SGD(KernelBenchmark):
    cases = {"step": "sgd_step"}

    def time_step(self, *params):
        self.step()


class Momentum(KernelBenchmark):
    cases = {"step": "momentum_step"}

    def time_step(self, *params):
        self.step()


class Adam(KernelBenchmark):
    cases = {"step": "adam_step"}

    def time_step(self, *params):
        self.step()

    def peakmem_step(self, *params):
        self.step()
