"""asv benchmarks of fastnn: one module per kernel family, data and implementations from fastnn.bench_cases."""
