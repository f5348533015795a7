"""`sam-triton soak`: minutes of perf_analyzer load with failed requests, server RSS and a probe's outputs checked."""
