"""`sam-triton perf`: perf_analyzer (found or fetched) over a concurrency sweep, input data from real photos, in-process baselines, ratios, the report and plots."""
