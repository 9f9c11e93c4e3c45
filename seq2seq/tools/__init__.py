"""Tools that run experiments: benchmarks, the GPU check, sweeps, plots, results, the n-gram
baseline, corpus download and store preparation."""
