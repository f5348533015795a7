"""sam_triton.perf: perf_analyzer drivers, input data, in-process baselines and reports."""
