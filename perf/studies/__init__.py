"""One-off measurements whose results are written down in docs/studies/: engine rounds, fidelity, the FP16 study, transports and generate timing."""
