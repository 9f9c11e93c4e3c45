#!/usr/bin/env bash
# The figures of docs/language-model.md: one training at a time, each under /usr/bin/time -v
# (peak RSS, wall time), into $RUNS/<name>/ with its log in $RUNS/<name>.log.
#   RUNS=runs/lm bash docs/bench/lm/run_all.sh [name ...]   (a name: a training below, or ngram)
set -u
RUNS=${RUNS:-runs/lm}
CHAR=configs/lm_multi30k_en_char.yaml
BPE=configs/lm_multi30k_en_bpe.yaml
MT=configs/multi30k_de_en.yaml
MT_SMALL="data.vocab_size=4000 model.embed_dim=256 model.hidden_dim=256 model.num_layers=1 model.tie_embeddings=false model.dropout=0.2 train.epochs=2"
COMMON="train.progress=false tracking.wandb=disabled"
declare -A RUN=(
  [char_rnn]="$CHAR model.cell=rnn"
  [char_gru]="$CHAR model.cell=gru"
  [char_lstm]="$CHAR model.cell=lstm"
  [char_lstm_sentence]="$CHAR train.lm_batching=sentence"
  [char_lstm_2layer]="$CHAR model.num_layers=2"
  [char_lstm_tied]="$CHAR model.tie_embeddings=true"
  [char_lstm_lr1e-3]="$CHAR train.lr=0.001"
  [char_lstm_2layer_dropout]="$CHAR model.num_layers=2 model.dropout=0.2"
  [char_lstm_2layer_dropout_tied]="$CHAR model.num_layers=2 model.dropout=0.2 model.tie_embeddings=true"
  [char_lstm_2layer_dropout_tied_8ep]="$CHAR model.num_layers=2 model.dropout=0.2 model.tie_embeddings=true train.epochs=8"
  [bpe_lstm]="$BPE"
  [bpe_lstm_2layer]="$BPE model.num_layers=2"
  [bpe_lstm_2layer_dropout]="$BPE model.num_layers=2 model.dropout=0.3"
  [bpe_lstm_2layer_dropout_tied]="$BPE model.num_layers=2 model.dropout=0.3 model.tie_embeddings=true"
  [bpe_lstm_8ep]="$BPE train.epochs=8"
  [mt_fresh]="$MT $MT_SMALL"
  [mt_from_lm]="$MT $MT_SMALL model.init_decoder_from=$RUNS/bpe_lstm_8ep"
  [bpe_lstm_2layer_dropout_tied_8ep]="$BPE model.num_layers=2 model.dropout=0.3 model.tie_embeddings=true train.epochs=8"
)
ORDER=(char_lstm char_rnn char_gru char_lstm_sentence char_lstm_2layer char_lstm_2layer_dropout
       char_lstm_2layer_dropout_tied bpe_lstm bpe_lstm_2layer_dropout_tied
       char_lstm_2layer_dropout_tied_8ep bpe_lstm_2layer bpe_lstm_2layer_dropout ngram char_lstm_tied
       char_lstm_lr1e-3 bpe_lstm_8ep bpe_lstm_2layer_dropout_tied_8ep mt_fresh mt_from_lm)
mkdir -p "$RUNS"
ngram() {  # the count-based baseline on the same text and tokens
  for cfg_orders in "$CHAR:3 5 7 9" "$BPE:2 3 4 5"; do
    echo "== python -m seq2seq.ngram --config ${cfg_orders%%:*} --order ${cfg_orders#*:}"
    # shellcheck disable=SC2086
    /usr/bin/time -v nice -n 5 python -m seq2seq.ngram --config "${cfg_orders%%:*}" --order ${cfg_orders#*:} 2>&1 \
      | grep -E "^order|Maximum resident|Elapsed \(wall"
  done
}
for name in "${@:-${ORDER[@]}}"; do
  if [[ $name == ngram ]]; then ngram; continue; fi
  read -r config overrides <<<"${RUN[$name]}"
  start=(--overwrite)
  if [[ $name == *_8ep && -d $RUNS/${name%_8ep}/last ]]; then  # the 4-epoch run, resumed to 8 epochs
    rm -rf "${RUNS:?}/$name" && cp -r "$RUNS/${name%_8ep}" "$RUNS/$name" && start=(--resume)
  fi
  echo "== $name: python train.py --config $config --out $RUNS/$name ${start[*]} $overrides $COMMON"
  echo "start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
  # shellcheck disable=SC2086
  /usr/bin/time -v nice -n 5 python train.py --config "$config" --out "$RUNS/$name" "${start[@]}" $overrides $COMMON \
    > "$RUNS/$name.log" 2>&1
  grep -E "^done:|Maximum resident|Elapsed \(wall" "$RUNS/$name.log"
  echo "end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
done
