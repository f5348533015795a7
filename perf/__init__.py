"""sam_triton.perf: measurements. ``benchmark`` (`sam-triton perf`: perf_analyzer sweeps and
in-process baselines), ``soak`` (`sam-triton soak`) and ``studies`` (one-off measurements whose
results live in docs/studies/). Imports ``build`` and ``client``, never ``cli``."""
