"""Training and decoding speed of this toolkit's Multi30k attention recipe against OpenNMT-py 3.5.1 and
Joey NMT 2.3.0, on the same CPU, the same threads and the same segmentation.

    python docs/bench/peers/run.py --data data/multi30k [--work runs/peers] [--rounds 3]
        [--train-steps 200] [--warmup 40] [--epoch-steps 454] [--sentences N]
        [--only install|train-speed|decode] [--fresh]
    python docs/bench/peers/run.py --markdown docs/bench/peers/peers_cpu.json

From the repository root, in the project's venv, on a quiet machine. Stages:

* ``install``: two venvs, WORK/venv-onmt and WORK/venv-joey, each with ``torch==2.13.0``. OpenNMT-py
  pins ``torch<2.3``, so it is installed with ``--no-deps`` and its other requirements one by one
  (those it needs to train and translate; not its server's flask/waitress, ctranslate2 or
  tensorboard). Then named, checked text patches of the installed files (:data:`PATCHES`): torch 2.6+
  loads checkpoints with ``weights_only=True``, which OpenNMT's checkpoint (it holds its options and
  vocabularies) cannot pass; torch 2.13's ``ReduceLROnPlateau`` has no ``verbose``. Skipped when done.
* data (always): this toolkit's tokenizers, built by its own code (``train_tokenizers`` on the
  recipe's training split, byte-level BPE, 8,000 each side), segment train/val/test into
  space-separated pieces files for the peers; training pairs over the recipe's ``max_len`` pieces are
  left out, as this toolkit's training does.
* ``train-speed``: fresh processes in alternating rounds: ours at its default precision (bf16 autocast
  where the CPU has native bf16) and in fp32, each with the recipe's encoder (512 a direction) and with
  OpenNMT-py's encoder sizes (``model.encoder_dim=256``: :data:`OURS`), OpenNMT-py (input feeding, its
  default), OpenNMT-py without input feeding, Joey NMT (without input feeding, as ours); each trains
  ``--train-steps`` steps of 128 sentences.
  Every tool reports target tokens per second over windows of steps: the non-padding target tokens
  including EOS (not BOS) over the window's wall-clock seconds. That is what each counts: ours
  ``(tgt_out != PAD).sum()`` per step over the metric window (seq2seq/training/steps.py, loop.py);
  OpenNMT ``n_words`` = non-padding tokens of ``tgt[1:]`` over a Statistics object that starts fresh
  after each report (onmt/utils/loss.py, statistics.py); Joey ``batch.ntokens`` = non-padding tokens of
  ``trg[:, 1:]`` since the last log (joeynmt/batch.py, training.py). A run's figure is the median of its
  windows that start after ``--warmup`` steps; a variant's figure is the median of its rounds.
* ``decode``: each tool trains ``--epoch-steps`` steps (default 454 of 128 sentences: two epochs; ours
  twice, the recipe and at OpenNMT-py's encoder sizes, :data:`OURS_MODELS`), then
  translates test_2016_flickr greedy and beam 5, 64 sentences a batch, in fresh processes. Sentences/s
  is over the translation time with the model loaded, as each tool reports it (OpenNMT
  ``-report_time``'s average x sentences; Joey's "Generation took", its loop over the batches), ours
  ``translate.py`` run by ``ours_translate.py``, which times its ``Translator.translate`` calls (no tool
  gets a warm-up). Our decodings are :data:`OURS_DECODE` (the command's defaults for the device) and
  any ``--ours-decode NAME:ARGS`` (translate.py's extra arguments, e.g. ``int8:--quantize int8``); the
  decoding models are trained once and reused (``--fresh`` trains them again). Also the whole process's wall time, the
  mean output length in pieces and BLEU (sacrebleu, 13a, on text: the peers' pieces decoded back by our
  tokenizer). Output length limits: ours 1.5 x source + 10 per sentence, OpenNMT 1.5 x the batch's
  longest source + 5, Joey 1.5 x the batch's longest source.

All processes run with OMP_NUM_THREADS=2 (``--threads``) and the same environment otherwise; ours
with ``train.adapt_threads=false``. Writes ``docs/bench/peers/peers_cpu.json`` (``--json``) and prints
a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
RECIPE = "multi30k_de_en_attention"
TORCH = "torch==2.13.0"
ONMT = "OpenNMT-py==3.5.1"
JOEY = "joeynmt==2.3.0"
# joeynmt/helpers.py imports importlib_metadata, which its metadata does not require
JOEY_DEPS = ["importlib-metadata"]
# OpenNMT-py 3.5.1's requirements less torch (pinned <2.3) and what only its server, tensorboard
# logging or CTranslate2 export use.
ONMT_DEPS = ["configargparse", "pyyaml", "sacrebleu", "pyonmttok>=1.37,<2", "rapidfuzz", "pyahocorasick",
             "fasttext-wheel", "spacy", "six"]
PATCHES: list[dict[str, str]] = [
    {"name": "onmt-load-weights-only-false", "venv": "venv-onmt", "file": "onmt/models/model_saver.py",
     "old": 'checkpoint = torch.load(ckpt_path, map_location=torch.device("cpu"))',
     "new": 'checkpoint = torch.load(ckpt_path, map_location=torch.device("cpu"), weights_only=False)',
     "check": "weights_only=False",
     "why": "training's resume and the translator's model loading (model_builder.load_test_model) both "
            "go through model_saver.load_checkpoint; its checkpoint holds options and vocabularies"},
    {"name": "joey-plateau-no-verbose", "venv": "venv-joey", "file": "joeynmt/builders.py",
     "old": '            "verbose": False,\n', "new": "", "check": '"threshold_mode": "abs",',
     "why": "torch 2.13's ReduceLROnPlateau has no verbose argument"},
    {"name": "joey-load-weights-only-false", "venv": "venv-joey", "file": "joeynmt/helpers.py",
     "old": "checkpoint = torch.load(path, map_location=map_location)",
     "new": "checkpoint = torch.load(path, map_location=map_location, weights_only=False)",
     "check": "weights_only=False",
     "why": "its checkpoint holds non-tensor training state"},
]
# Our training runs: train.py's overrides of the recipe. "onmt_shape": OpenNMT-py's encoder sizes
# (256 a direction beside the decoder's 512: model.encoder_dim), the rest the recipe's.
OURS: dict[str, list[str]] = {
    "ours_default": [],
    "ours_fp32": ["train.bf16=false"],
    "ours_onmt_shape": ["model.encoder_dim=256"],
    "ours_onmt_shape_fp32": ["model.encoder_dim=256", "train.bf16=false"],
}
PEERS = ("onmt", "onmt_if0", "joey")
VARIANTS = (*OURS, *PEERS)
# The decoding models: ours (the recipe) and ours at OpenNMT-py's encoder sizes, at the default precision.
OURS_MODELS: dict[str, list[str]] = {"ours": OURS["ours_default"], "ours_onmt_shape": OURS["ours_onmt_shape"]}


def die(msg: str) -> NoReturn:
    sys.exit(f"error: {msg}")


def sh(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, **kw)


def env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
            "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}


def site(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        die(f"{venv}: no site-packages")
    return found[0]


# ---------------------------------------------------------------------------------------- install

def patch(work: Path, p: dict[str, str]) -> str:
    path = site(work / p["venv"]) / p["file"]
    text = path.read_text()
    if p["old"] not in text:
        if p["check"] in text:
            return "already applied"
        die(f"patch {p['name']}: text not found in {path}")
    path.write_text(text.replace(p["old"], p["new"], 1))
    return "applied"


def install(work: Path) -> dict[str, Any]:
    """Both venvs, made once (``install.done``) with pip's output in WORK/install.log; then the patches."""
    done = work / "install.done"
    if not done.is_file():
        print(f"installing {ONMT} and {JOEY} into {work} (pip's output: {work / 'install.log'})", flush=True)
        with open(work / "install.log", "a") as log:
            for name, pkgs in (("venv-onmt", None), ("venv-joey", [JOEY, TORCH, *JOEY_DEPS])):
                venv = work / name
                if not (venv / "bin" / "python").is_file():
                    sh([sys.executable, "-m", "venv", str(venv)])
                pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
                steps = [[*pip, TORCH, *ONMT_DEPS], [*pip, "--no-deps", ONMT]] if pkgs is None else [[*pip, *pkgs]]
                for cmd in steps:
                    sh(cmd, stdout=log, stderr=subprocess.STDOUT)
        done.write_text("ok\n")
    results = {p["name"]: patch(work, p) for p in PATCHES}
    return {"patches": [{**{k: p[k] for k in ("name", "file", "why")}, "result": results[p["name"]]}
                        for p in PATCHES], "onmt_deps": ONMT_DEPS, "joey_deps": JOEY_DEPS,
            "packages": [ONMT, JOEY, TORCH]}


def version(py: Path, module: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({module!r}))"
    return subprocess.run([str(py), "-c", code], text=True, capture_output=True).stdout.strip()


# ------------------------------------------------------------------------------------------- data

def prepare(data: Path, work: Path) -> dict[str, Any]:
    from seq2seq.config.loading import load_config
    from seq2seq.data.batching import encode_pairs
    from seq2seq.data.corpus import load_corpus
    from seq2seq.data.tokenization import train_tokenizers

    cfg = load_config(RECIPE, [f"data.path={data}"])
    d = cfg.data
    out = work / "pieces"
    marker = out / "done.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    out.mkdir(parents=True, exist_ok=True)
    corpus = load_corpus(d)
    src_tok, tgt_tok = train_tokenizers(corpus.train, d.tokenizer, d.vocab_size, d.joint_vocab)
    src_tok.save(out / "src_tokenizer.json")
    tgt_tok.save(out / "tgt_tokenizer.json")
    kept, too_long, _ = encode_pairs(corpus.train, src_tok, tgt_tok, d.max_len)
    counts = {}
    src_pieces, tgt_pieces = piece_table(src_tok), piece_table(tgt_tok)
    for split, pairs in (("train", corpus.train), ("val", corpus.valid), ("test", corpus.test)):
        src = [" ".join(src_pieces[i] for i in ids) for ids in src_tok.encode_batch([s for s, _ in pairs])]
        tgt = [" ".join(tgt_pieces[i] for i in ids) for ids in tgt_tok.encode_batch([t for _, t in pairs])]
        rows = [(a, b, raw_a, raw_b) for a, b, (raw_a, raw_b) in zip(src, tgt, pairs)]  # pieces, pieces, text, text
        if split == "train":
            rows = [r for r in rows if 0 < len(r[0].split()) <= d.max_len and 0 < len(r[1].split()) <= d.max_len]
        for lang, i in ((d.src_lang, 0), (d.tgt_lang, 1)):
            (out / f"{split}.{lang}").write_text("".join(r[i] + "\n" for r in rows), encoding="utf-8")
            (out / f"{split}.raw.{lang}").write_text("".join(r[i + 2] + "\n" for r in rows), encoding="utf-8")
        counts[split] = len(rows)
    info = {"pairs": counts, "train_dropped_too_long": too_long, "ours_train_kept": len(kept),
            "tokenizer": d.tokenizer, "vocab_size": d.vocab_size, "src_lang": d.src_lang, "tgt_lang": d.tgt_lang,
            "vocab": {"src": src_tok.vocab_size, "tgt": tgt_tok.vocab_size}}
    marker.write_text(json.dumps(info, indent=1))
    return info


def piece_table(tok: Any) -> list[str]:
    """Each id's piece, the byte-level BPE vocabulary's own spelling (no spaces: a space is a byte
    symbol), read from the tokenizer's JSON: ``table[id]``."""
    vocab: dict[str, int] = json.loads(tok.to_json())["tokenizer"]["model"]["vocab"]
    table = [""] * (max(vocab.values()) + 1)
    for piece, i in vocab.items():
        table[i] = piece
    return table


def detok(work: Path, lines: list[str]) -> list[str]:
    """Space-separated pieces back to text by our target tokenizer (a piece not in it is dropped)."""
    from seq2seq.data.tokenization import Tokenizer
    tok = Tokenizer.load(work / "pieces" / "tgt_tokenizer.json")
    ids = {p: i for i, p in enumerate(piece_table(tok))}
    return [tok.decode([ids[p] for p in line.split() if p in ids]) for line in lines]


# -------------------------------------------------------------------------------------- configs

def onmt_config(work: Path, run: Path, steps: int, window: int, input_feed: int) -> Path:
    p = work / "pieces"
    cfg = {"save_data": str(run / "data"), "src_vocab": str(work / "onmt_vocab.src"),
           "tgt_vocab": str(work / "onmt_vocab.tgt"), "overwrite": True,
           "data": {"corpus_1": {"path_src": str(p / "train.de"), "path_tgt": str(p / "train.en")},
                    "valid": {"path_src": str(p / "val.de"), "path_tgt": str(p / "val.en")}},
           "src_vocab_size": 8000, "tgt_vocab_size": 8000, "src_words_min_frequency": 1,
           "tgt_words_min_frequency": 1,
           "encoder_type": "brnn", "decoder_type": "rnn", "rnn_type": "LSTM", "layers": 2,
           "word_vec_size": 256, "hidden_size": 512, "global_attention": "general", "input_feed": input_feed,
           "dropout": [0.4], "attention_dropout": [0.0], "batch_type": "sents", "batch_size": 128,
           "valid_batch_size": 64, "optim": "adam", "learning_rate": 0.001, "max_grad_norm": 1.0,
           "label_smoothing": 0.1, "train_steps": steps, "valid_steps": 10 ** 6, "report_every": window,
           "save_model": str(run / "model"), "save_checkpoint_steps": steps, "seed": 1, "num_workers": 0,
           "log_file": str(run / "train.log"), "world_size": 1, "gpu_ranks": []}
    run.mkdir(parents=True, exist_ok=True)
    path = run / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def joey_config(work: Path, run: Path, steps: int, window: int, input_feeding: bool,
                beam: int = 1, trained: bool = False) -> Path:
    p = work / "pieces"
    side = {"level": "word", "lowercase": False, "max_length": 100, "voc_min_freq": 1, "voc_limit": 8000,
            "tokenizer_cfg": {"pretokenizer": "none"}}
    src, trg = {**side, "lang": "de"}, {**side, "lang": "en"}
    if trained:
        src["voc_file"], trg["voc_file"] = str(run / "src_vocab.txt"), str(run / "trg_vocab.txt")
    cfg = {"name": "peers",
           "data": {"train": str(p / "train"), "dev": str(p / "val"), "test": str(p / "test"),
                    "dataset_type": "plain", "src": src, "trg": trg},
           "testing": {"beam_size": beam, "batch_size": 64, "batch_type": "sentence", "alpha": 1.0,
                       "eval_metrics": ["bleu"], "n_best": 1},
           "training": {"random_seed": 1, "optimizer": "adam", "learning_rate": 0.001, "batch_size": 128,
                        "batch_type": "sentence", "clip_grad_norm": 1.0, "label_smoothing": 0.1,
                        "epochs": 1000, "updates": steps, "logging_freq": window, "validation_freq": 10 ** 6,
                        "model_dir": str(run), "overwrite": not trained, "shuffle": True, "use_cuda": False,
                        "fp16": False, "num_workers": 0, "keep_best_ckpts": 1, "early_stopping_metric": "loss",
                        "print_valid_sents": [], "scheduling": "plateau", "patience": 5},
           "model": {"initializer": "xavier_uniform", "tied_embeddings": False, "tied_softmax": False,
                     "encoder": {"type": "recurrent", "rnn_type": "lstm",
                                 "embeddings": {"embedding_dim": 256, "dropout": 0.4},
                                 "hidden_size": 512, "bidirectional": True, "dropout": 0.4, "num_layers": 2},
                     "decoder": {"type": "recurrent", "rnn_type": "lstm",
                                 "embeddings": {"embedding_dim": 256, "dropout": 0.4},
                                 "hidden_size": 512, "attention": "luong", "dropout": 0.4, "hidden_dropout": 0.4,
                                 "num_layers": 2, "input_feeding": input_feeding,
                                 "init_hidden": "bridge"}}}
    run.mkdir(parents=True, exist_ok=True)
    path = (run.parent / f"{run.name}.translate{beam}.yaml") if trained else (run.parent / f"{run.name}.yaml")
    path.write_text(yaml.safe_dump(cfg))
    return path


# ------------------------------------------------------------------------------------- training

ONMT_STEP = re.compile(r"Step\s+(\d+)/\s*\d+;.*?(\d+)/\s*(\d+) tok/s")
JOEY_STEP = re.compile(r"Step:\s+(\d+),.*?Tokens per Sec:\s+(\d+)")


def steady(windows: list[tuple[int, float]], window: int, warmup: int) -> dict[str, Any]:
    """Windows ``(last step, tokens/s)`` whose first step comes after ``warmup``; their median."""
    kept = [r for s, r in windows if s - window >= warmup]
    if not kept:
        die(f"no metric window after the {warmup} warm-up steps (windows ending at {[s for s, _ in windows]})")
    return {"tokens_per_s": statistics.median(kept), "windows_tokens_per_s": kept,
            "windows_end_steps": [s for s, _ in windows if s - window >= warmup]}


def ours_train(data: Path, run: Path, steps: int, window: int, overrides: list[str], threads: int,
               valid: int = 64) -> tuple[list[str], float]:
    if run.exists():
        shutil.rmtree(run)
    cmd = [sys.executable, "train.py", "--config", RECIPE, "--out", str(run), f"data.path={data}",
           f"train.max_steps={steps}", f"train.log_every={window}", f"train.valid_max_sentences={valid}",
           "train.adapt_threads=false", "tracking.wandb=disabled", *overrides]
    t0 = time.perf_counter()
    with open(str(run) + ".log", "w") as log:
        sh(cmd, cwd=ROOT, env=env(threads), stdout=log, stderr=subprocess.STDOUT)
    return cmd, time.perf_counter() - t0


def onmt_vocab(work: Path, threads: int) -> list[str]:
    cfg = onmt_config(work, work / "onmt_vocab_run", 1, 1, 1)
    cmd = [str(work / "venv-onmt" / "bin" / "onmt_build_vocab"), "-config", str(cfg), "-n_sample", "-1"]
    if not (work / "onmt_vocab.src").is_file():
        sh(cmd, env=env(threads), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cmd


def peer_train(tool: str, work: Path, run: Path, steps: int, window: int, threads: int) -> tuple[list[str], float]:
    if run.exists():
        shutil.rmtree(run)
    if tool.startswith("onmt"):
        cfg = onmt_config(work, run, steps, window, 0 if tool == "onmt_if0" else 1)
        cmd = [str(work / "venv-onmt" / "bin" / "onmt_train"), "-config", str(cfg)]
    else:
        cfg = joey_config(work, run, steps, window, input_feeding=False)
        cmd = [str(work / "venv-joey" / "bin" / "python"), "-m", "joeynmt", "train", str(cfg), "--skip-test"]
    t0 = time.perf_counter()
    with open(str(run) + ".log", "w") as log:
        sh(cmd, env=env(threads), stdout=log, stderr=subprocess.STDOUT)
    return cmd, time.perf_counter() - t0


def windows_of(tool: str, run: Path) -> list[tuple[int, float]]:
    if tool.startswith("ours"):
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["train/tokens_per_s"]) for r in records if "train/tokens_per_s" in r]
    log = Path(str(run) + ".log").read_text() + ((run / "train.log").read_text()
                                                 if (run / "train.log").is_file() else "")
    if tool.startswith("onmt"):  # its report lines go to the console (stderr) only
        return sorted({(int(m[1]), float(m[3])) for m in ONMT_STEP.finditer(log)})
    return sorted({(int(m[1]), float(m[2])) for m in JOEY_STEP.finditer(log)})


def params_of(tool: str, run: Path) -> int | None:
    text = Path(str(run) + ".log").read_text() + ((run / "train.log").read_text()
                                                  if (run / "train.log").is_file() else "")
    pattern = {"ours": r"model: ([\d,]+) parameters", "onmt": r"\* number of parameters: (\d+)",
               "joey": r"Total params: (\d+)"}[tool.split("_")[0]]
    m = re.search(pattern, text)
    return int(m[1].replace(",", "")) if m else None


def train_speed(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    window = args.window or max(1, min(10, (args.train_steps - args.warmup) // 4))
    if args.warmup % window:
        die(f"--warmup {args.warmup} must be a multiple of the metric window ({window})")
    started = stamp(args.json)
    onmt_vocab(work, args.threads)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    commands: dict[str, list[str]] = {}
    params: dict[str, int | None] = {}
    for r in range(1, args.rounds + 1):
        for v in VARIANTS:
            run = work / "speed" / f"{v}.{r}"
            run.parent.mkdir(parents=True, exist_ok=True)
            if v.startswith("ours"):
                cmd, wall = ours_train(args.data, run, args.train_steps, window, OURS[v], args.threads)
            else:
                cmd, wall = peer_train(v, work, run, args.train_steps, window, args.threads)
            commands[v] = cmd
            params[v] = params_of(v, run)
            result = {**steady(windows_of(v, run), window, args.warmup), "process_wall_s": wall}
            if v.startswith("ours"):
                result["same_segmentation"] = same_tokenizers(run / "best", work)
            runs[v].append(result)
            print(f"round {r} {v}: {result['tokens_per_s']:.0f} tokens/s", flush=True)
    med = {v: statistics.median(x["tokens_per_s"] for x in runs[v]) for v in VARIANTS}
    ratios = {f"{o}/{p}": med[o] / med[p] for o in OURS for p in VARIANTS if p != o}
    return {**started, "train_steps": args.train_steps, "warmup_steps": args.warmup, "window_steps": window,
            "median_tokens_per_s": med, "ratios": ratios, "parameters_reported": params,
            "commands": commands, "runs": runs}


# ------------------------------------------------------------------------------------- decoding

# Our decodings: a name and translate.py's extra arguments (another precision, a quantized model, ...);
# "ours" is the command's defaults for the device. More from the command line: --ours-decode NAME:ARGS.
OURS_DECODE: list[tuple[str, list[str]]] = [("ours", [])]
DECODE_BATCH = 64


def same_tokenizers(checkpoint: Path, work: Path) -> bool:
    """Whether our training built the tokenizers that wrote the pieces files (the same JSON)."""
    return all((checkpoint / f"{side}_tokenizer.json").read_text(encoding="utf-8")
               == (work / "pieces" / f"{side}_tokenizer.json").read_text(encoding="utf-8") for side in ("src", "tgt"))


def train_once(args: argparse.Namespace, work: Path, run: Path, tool: str, window: int) -> dict[str, Any]:
    """Train ``tool``'s decoding model for ``--epoch-steps`` into ``run``, or reuse the one there
    (trained for as many steps; ``--fresh`` removes it) -> command, wall time, parameters."""
    done = run.parent / f"{tool}.done.json"
    if done.is_file():
        kept: dict[str, Any] = json.loads(done.read_text())
        if kept.get("epoch_steps") == args.epoch_steps:
            return {**kept, "reused": True}
    if tool in OURS_MODELS:
        cmd, wall = ours_train(args.data, run, args.epoch_steps, window, OURS_MODELS[tool], args.threads, valid=0)
    else:
        cmd, wall = peer_train(tool, work, run, args.epoch_steps, window, args.threads)
    result = {"epoch_steps": args.epoch_steps, "command": cmd, "wall_s": wall, "parameters": params_of(tool, run)}
    done.write_text(json.dumps(result, indent=1) + "\n")
    return {**result, "reused": False}


def bleu(hyps: list[str], refs: list[str]) -> float:
    import sacrebleu
    return float(sacrebleu.corpus_bleu(hyps, [refs]).score)


def decode_stage(args: argparse.Namespace, work: Path, info: dict[str, Any]) -> dict[str, Any]:
    started = stamp(args.json)
    from seq2seq.data.tokenization import Tokenizer
    tgt_tok = Tokenizer.load(work / "pieces" / "tgt_tokenizer.json")
    src_lang, tgt_lang = info["src_lang"], info["tgt_lang"]
    dec = work / "decode"
    dec.mkdir(parents=True, exist_ok=True)
    n = args.sentences or info["pairs"]["test"]
    pieces = (work / "pieces" / f"test.{src_lang}").read_text(encoding="utf-8").splitlines()[:n]
    raw = (work / "pieces" / f"test.raw.{src_lang}").read_text(encoding="utf-8").splitlines()[:n]
    refs = (work / "pieces" / f"test.raw.{tgt_lang}").read_text(encoding="utf-8").splitlines()[:n]
    (dec / f"src.{src_lang}").write_text("".join(x + "\n" for x in pieces), encoding="utf-8")
    (dec / f"raw.{src_lang}").write_text("".join(x + "\n" for x in raw), encoding="utf-8")
    onmt_vocab(work, args.threads)
    window = max(1, min(50, args.epoch_steps // 4))
    trained: dict[str, Any] = {}
    for tool in (*OURS_MODELS, *PEERS):
        trained[tool] = train_once(args, work, dec / tool, tool, window)
    seg_same = all(same_tokenizers(dec / tool / "best", work) for tool in OURS_MODELS)
    if not seg_same:
        print("warning: ours trained with other tokenizers than the pieces files' (see same_segmentation_in_training)")
    # (name, our model's run folder or None for a peer, translate.py's extra arguments)
    variants: list[tuple[str, Path | None, list[str]]] = [
        *[(name, dec / "ours", extra) for name, extra in [*OURS_DECODE, *args.ours_decode]],
        *[(tool, dec / tool, []) for tool in OURS_MODELS if tool != "ours"], *[(t, None, []) for t in PEERS]]
    rows: list[dict[str, Any]] = []
    for beam in (1, 5):
        for name, ours_run, extra in variants:
            out = dec / f"{name}.beam{beam}.out"
            e = env(args.threads)
            t0 = time.perf_counter()
            if ours_run is not None:
                times = Path(str(out) + ".times.json")
                cmd = [sys.executable, str(HERE / "ours_translate.py"), str(times), "--checkpoint",
                       str(ours_run / "best"), "--input", str(dec / f"raw.{src_lang}"), "--output", str(out),
                       "--beam", str(beam), "--batch-size", str(DECODE_BATCH), *extra]
                with open(str(out) + ".log", "w") as log:
                    sh(cmd, cwd=ROOT, env=e, stdout=log, stderr=subprocess.STDOUT)
                wall = time.perf_counter() - t0
                seconds = json.loads(times.read_text())["translate_s"]
                texts = out.read_text(encoding="utf-8").splitlines()
                lengths = [len(tgt_tok.encode(t)) for t in texts]  # our output re-tokenized
            elif name.startswith("onmt"):
                models = sorted((dec / name).glob("model_step_*.pt"))
                cmd = [str(work / "venv-onmt" / "bin" / "onmt_translate"), "-model", str(models[-1]),
                       "-src", str(dec / f"src.{src_lang}"), "-output", str(out), "-beam_size", str(beam),
                       "-batch_size", str(DECODE_BATCH), "-batch_type", "sents", "-max_length_ratio", "1.5",
                       "-report_time", "-seed", "1"]
                res = sh(cmd, env=e, capture_output=True)
                wall = time.perf_counter() - t0
                # its total is printed to 0.1 s; the average per sentence to 0.1 ms
                m = re.search(r"Average translation time \(ms\): ([\d.]+)", res.stdout + res.stderr)
                if not m:
                    die(f"{name}: no 'Average translation time' in onmt_translate's output")
                hyp = out.read_text(encoding="utf-8").splitlines()
                seconds = float(m[1]) * len(hyp) / 1000
                texts, lengths = detok(work, hyp), [len(h.split()) for h in hyp]
            else:
                cfg = joey_config(work, dec / name, args.epoch_steps, window, False, beam=beam, trained=True)
                # Not --output-path: Joey 2.3.0's translate then fails on args.n_best after translating;
                # without it, it prints the translations to stdout (its log goes to stderr).
                cmd = [str(work / "venv-joey" / "bin" / "python"), "-m", "joeynmt", "translate", str(cfg)]
                with open(dec / f"src.{src_lang}", encoding="utf-8") as src:
                    res = sh(cmd, env=e, stdin=src, capture_output=True)
                wall = time.perf_counter() - t0
                out.write_text(res.stdout, encoding="utf-8")
                m = re.search(r"Generation took ([\d.]+)\[sec\]", res.stdout + res.stderr)
                if not m:
                    die(f"{name}: no 'Generation took' in joeynmt's output")
                seconds = float(m[1])
                hyp = out.read_text(encoding="utf-8").splitlines()
                texts, lengths = detok(work, hyp), [len(h.split()) for h in hyp]
            row = {"tool": name, "beam": beam, "sentences": len(texts), "translate_s": seconds,
                   "sentences_per_s": len(texts) / seconds, "process_wall_s": wall,
                   "mean_output_pieces": sum(lengths) / max(len(lengths), 1), "bleu": bleu(texts, refs),
                   "command": cmd}
            rows.append(row)
            print(f"decode {name} beam {beam}: {row['sentences_per_s']:.1f} sent/s, BLEU {row['bleu']:.2f}", flush=True)
    return {**started, "epoch_steps": args.epoch_steps, "batch_size": DECODE_BATCH, "sentences": n, "trained": trained,
            "same_segmentation_in_training": seg_same, "rows": rows}


# -------------------------------------------------------------------------------------- report

SHAPES = {
    "ours": "LSTM 2 layers; encoder bidirectional, 512 per direction, a bridge (Linear 1024->512) to the decoder's "
            "initial state and a projection of the 1024-wide memory to 512; Luong general attention; peeky decoder "
            "(the context goes into every step's input and the output layer), no input feeding; target "
            "embedding tied to the output layer through a projection to 256; embed 256; dropout 0.4",
    "onmt": "encoder_type brnn: 2 layers, 256 per direction (hidden_size 512 is split), final states "
            "concatenated into the decoder's (no bridge); Luong general attention; input feeding (the previous "
            "attentional vector goes into the next step's input); output layer untied (sharing needs "
            "word_vec_size == hidden_size); embed 256; dropout 0.4",
    "ours_onmt_shape": "as ours with model.encoder_dim=256: 256 per direction, as OpenNMT-py's brnn; the bridge "
                       "(Linear 512->512) and the memory projection (512->512) stay",
    "onmt_if0": "as onmt, input_feed 0: the decoder's input is the target embedding only (the context reaches the "
                "output only through the attentional layer)",
    "joey": "recurrent encoder, 2 layers, bidirectional, 512 per direction; bridge init_hidden; Luong attention; "
            "input_feeding false (as ours; it can feed, its default); its decoder runs one step at a time in "
            "training too (a loop over target positions); untied output layer (tying needs embedding size == "
            "hidden size); embed 256; "
            "dropout 0.4 (also on embeddings and the hidden attentional vector)",
    "common": "batch 128 sentences, Adam lr 1e-3, gradient clip 1.0, label smoothing 0.1, seed 1, the same "
              "pieces; the peers' vocabularies are built from the pieces files (8,000 + their specials), ours is "
              "the tokenizer's 8,000 ids",
}


def stamp(result_file: Path | None = None) -> dict[str, Any]:
    """The commit, whether the tree had changes (other than ``result_file``, which a run rewrites)
    and the date, taken when a stage starts."""
    skip = []
    if result_file is not None and result_file.resolve().is_relative_to(ROOT):
        skip = [f":(exclude){result_file.resolve().relative_to(ROOT)}"]
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", ".", *skip], cwd=ROOT, text=True,
                                capture_output=True).stdout)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                            capture_output=True).stdout.strip()
    return {"commit": commit, "dirty": dirty, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def machine() -> dict[str, Any]:
    lscpu = subprocess.run(["lscpu"], text=True, capture_output=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "")
    flags = sorted({f for f in re.findall(r"\b(avx512_bf16|amx_bf16|amx_tile|avx512f|avx2)\b", lscpu)})
    return {"cpu": model, "flags": flags, "cores": os.cpu_count(), "python": platform.python_version()}


def markdown(result: dict[str, Any]) -> str:
    lines = []
    ts = result.get("train_speed")
    if ts:
        med = ts["median_tokens_per_s"]
        ours = [v for v in med if v.startswith("ours")]
        lines += ["| training | target tokens/s (median) | " + " | ".join(f"{o} / this" for o in ours) + " |",
                  "| --- | ---: | " + " | ".join("---:" for _ in ours) + " |"]
        for v, x in med.items():
            lines.append(f"| {v} | {x:,.0f} | " + " | ".join(f"{med[o] / x:.2f}" for o in ours) + " |")
        lines.append("")
    de = result.get("decode")
    if de:
        lines += ["| decoding | beam | sentences/s | process wall s | mean output pieces | BLEU |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in de["rows"]:
            lines.append(f"| {r['tool']} | {r['beam']} | {r['sentences_per_s']:.1f} | {r['process_wall_s']:.1f} | "
                         f"{r['mean_output_pieces']:.1f} | {r['bleu']:.2f} |")
    return "\n".join(lines)


def parse_decode(text: str) -> tuple[str, list[str]]:
    """``NAME:ARGS`` -> ("ours_NAME", translate.py's extra arguments), e.g. ``int8:--quantize int8``."""
    name, _, rest = text.partition(":")
    if not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME:ARGS (e.g. int8:--quantize int8), got {text!r}")
    return f"ours_{name}", shlex.split(rest)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT / "data" / "multi30k")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "peers")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=200, help="steps of each timed training run")
    p.add_argument("--warmup", type=int, default=40, help="steps left out at the start of each timed run")
    p.add_argument("--window", type=int, default=0, help="steps a metric window (default: from the steps)")
    p.add_argument("--epoch-steps", type=int, default=454, help="training steps of each decoding model (two epochs)")
    p.add_argument("--sentences", type=int, default=0, help="test sentences decoded (default all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", choices=("install", "train-speed", "decode"))
    p.add_argument("--fresh", action="store_true", help="remove WORK's runs and pieces first (not the venvs)")
    p.add_argument("--ours-decode", type=parse_decode, action="append", default=[],
                   metavar="NAME:ARGS", help="another decoding of ours: translate.py with these extra arguments")
    p.add_argument("--json", type=Path, default=HERE / "peers_cpu.json")
    p.add_argument("--markdown", type=Path, metavar="JSON", help="print the table of a result file and stop")
    args = p.parse_args()
    try:
        run(args)
    except subprocess.CalledProcessError as e:
        cmd = e.cmd if isinstance(e.cmd, list) else [str(e.cmd)]
        die(f"{' '.join(map(str, cmd[:4]))} ... failed (exit {e.returncode}); its log is in {args.work}")
    except (OSError, ValueError) as e:  # a file the user named or the work folder: one line, not a traceback
        die(str(e))


def run(args: argparse.Namespace) -> None:
    """The stages ``args`` asks for, the result file written after each."""
    for name in ("rounds", "train_steps", "epoch_steps", "threads"):
        if getattr(args, name) < 1:
            die(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.warmup < args.train_steps:
        die(f"--warmup must be in [0, --train-steps), got {args.warmup}")
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    args.data = args.data.resolve()
    if not args.data.is_dir():
        die(f"{args.data}: no such data folder (python -m seq2seq download multi30k)")
    for split in ("train", "val", "test_2016_flickr"):
        for lang in ("de", "en"):
            if not any((args.data / f"{split}.{lang}{gz}").is_file() for gz in ("", ".gz")):
                die(f"{args.data}: no {split}.{lang}[.gz]")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        for name in ("speed", "decode", "pieces", "onmt_vocab.src", "onmt_vocab.tgt", "onmt_vocab_run"):
            target = work / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    load_before = os.getloadavg()
    result: dict[str, Any] = {}
    if args.json.is_file():
        result = json.loads(args.json.read_text())
    result["install"] = install(work)
    if args.only == "install":
        return
    info = prepare(args.data, work)
    result.update({  # the stages' own commit and date are in theirs (a stage run alone keeps the other's)
        "machine": machine(), **stamp(args.json), "command": " ".join(["python", *sys.argv]),
        "environment": {"OMP_NUM_THREADS": args.threads, "MKL_NUM_THREADS": args.threads,
                        "ours": "train.adapt_threads=false; python -m seq2seq sets GOMP_SPINCOUNT and glibc malloc "
                                "tunables for its own process (seq2seq/runtime/tuning.py)"},
        "versions": {"ours_torch": __import__("torch").__version__,
                     "onmt": version(work / "venv-onmt" / "bin" / "python", "OpenNMT-py"),
                     "onmt_torch": version(work / "venv-onmt" / "bin" / "python", "torch"),
                     "joey": version(work / "venv-joey" / "bin" / "python", "joeynmt"),
                     "joey_torch": version(work / "venv-joey" / "bin" / "python", "torch")},
        "data": info, "shapes": SHAPES,
        "method": {"training": "non-padding target tokens including EOS per wall-clock second, per metric window "
                               "as each tool logs it; a run: median of the windows that start after the warm-up; "
                               "a variant: median of the rounds; rounds alternate fresh processes",
                   "decoding": "sentences over the translation time with the model loaded, as each tool reports it "
                               "(ours: translate.py in ours_translate.py, timing its Translator.translate calls); "
                               "no warm-up for any tool; process "
                               "wall time includes start-up and model loading; BLEU: sacrebleu 13a on text"},
    })
    if args.only in (None, "train-speed"):
        result["train_speed"] = train_speed(args, work)
        args.json.write_text(json.dumps(result, indent=1) + "\n")  # kept if decoding fails
    if args.only in (None, "decode"):
        result["decode"] = decode_stage(args, work, info)
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
