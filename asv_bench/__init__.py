"""asv benchmarks of fastnn: one module per kernel family, data and implementations from the registry
(fastnn.bench_cases); ``kernels`` times every registry case no family class names."""
