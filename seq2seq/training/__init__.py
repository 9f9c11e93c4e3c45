"""Training: the loop and its steps, the run directory, checkpoints kept per run, CUDA graphs,
W&B tracking, weight averaging, and the language model's loop."""
