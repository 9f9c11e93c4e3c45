#!/bin/bash
# train.batch_by target (the default) against source on the tests' dates model (6,000 pairs,
# 7 epochs), seeds 1-24, one thread: prints each run's best valid BLEU. From the repository root.
for seed in $(seq 1 24); do
  for by in target source; do
    echo -n "$by $seed: "
    OMP_NUM_THREADS=1 python train.py --config configs/dates.yaml --out /tmp/batch_by_$by --overwrite \
      data.size=6000 model.hidden_dim=128 train.batch_size=32 train.epochs=7 train.valid_max_sentences=100 \
      train.samples=0 train.progress=false tracking.wandb=disabled train.batch_by=$by train.seed=$seed 2>&1 \
      | grep -o 'best valid BLEU [0-9.]*'
  done
done
