"""Model unit tests: shapes, the context vector, peeky wiring, masking, step == whole sequence."""

import itertools
from typing import Any

import pytest
import torch
from torch import Tensor

from seq2seq.config import ModelConfig
from seq2seq.data.tokenization import PAD
from seq2seq.model.seq2seq import build_model

V_SRC, V_TGT = 13, 11


def make(**kw):
    torch.manual_seed(0)
    cfg = ModelConfig(embed_dim=8, hidden_dim=16, **kw)
    return build_model(cfg, V_SRC, V_TGT).eval()


def random_batch(lengths, vocab=V_SRC, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = max(lengths)
    src = torch.full((len(lengths), S), PAD, dtype=torch.long)
    for i, n in enumerate(lengths):
        src[i, :n] = torch.randint(4, vocab, (n,), generator=g)
    return src, torch.tensor(lengths)


VARIANTS = [dict(cell=c, peeky=p, num_layers=n) for c, p, n in
            itertools.product(["lstm", "gru", "rnn"], [True, False], [1, 2])]
VARIANTS += [dict(bidirectional=True, num_layers=2), dict(attention="luong"),
             dict(attention="luong", bidirectional=True, cell="gru"), dict(tie_embeddings=True),
             dict(tie_embeddings=True, peeky=False, attention="luong"), dict(decoder_init="hidden", num_layers=2),
             dict(bidirectional=True, encoder_dim=8, num_layers=2, attention="luong"),
             dict(encoder_dim=24, cell="gru", num_layers=2)]


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_shapes_and_step_equals_whole_sequence(kw) -> None:
    model = make(**kw)
    src, src_len = random_batch([5, 3, 1])
    tgt_in = torch.randint(4, V_TGT, (3, 6))
    logits = model(src, src_len, tgt_in)
    assert logits.shape == (3, 6, V_TGT)
    state = model.encode(src, src_len)
    L = kw.get("num_layers", 1)
    assert state.hidden.shape == (L, 3, 16)
    assert state.context.shape == (3, 16)
    assert (state.cell is not None) == (kw.get("cell", "lstm") == "lstm")
    steps = []
    for t in range(6):
        step_logits, state = model.decode_step(tgt_in[:, t], state)
        steps.append(step_logits)
    torch.testing.assert_close(torch.stack(steps, 1), logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_encoder_dim_sizes_the_encoder_and_the_bridge_joins_it_to_the_decoder(bidirectional: bool) -> None:
    """``model.encoder_dim`` is each direction's size: a bidirectional encoder of 8 a direction
    beside a decoder of 16 (OpenNMT-py's brnn sizes) has LSTM weights of 8 and a bridge from 16;
    the decoder's state, context and attention memory are 16 wide."""
    model = make(encoder_dim=8, bidirectional=bidirectional, num_layers=2, attention="luong")
    dirs = 2 if bidirectional else 1
    rnn = model.encoder.rnn
    assert rnn.hidden_size == 8 and rnn.weight_hh_l1.shape == (32, 8) and rnn.weight_ih_l1.shape == (32, 8 * dirs)
    assert model.encoder.bridge.weight.shape == (16, 8 * dirs)
    assert model.encoder.memory_proj.weight.shape == (16, 8 * dirs)
    src, src_len = random_batch([5, 3, 1])
    state = model.encode(src, src_len)
    assert state.hidden.shape == state.cell.shape == (2, 3, 16) and state.memory.shape == (3, 5, 16)
    # the bridge reads each layer's final states, forward then backward
    _, (h, _) = rnn(torch.nn.utils.rnn.pack_padded_sequence(model.src_embed(src), src_len, batch_first=True))
    joined = h.view(2, dirs, 3, 8).permute(0, 2, 1, 3).reshape(2, 3, 8 * dirs)
    torch.testing.assert_close(state.hidden, torch.tanh(model.encoder.bridge(joined)))
    assert make(encoder_dim=16).encoder.bridge is None  # the decoder's size: no bridge, as without the option


def test_context_is_top_layer_final_hidden_state() -> None:
    model = make(num_layers=2)
    src, src_len = random_batch([6, 2, 4])
    state = model.encode(src, src_len)
    # Run the encoder by hand on each sequence alone, without padding.
    for i, n in enumerate(src_len.tolist()):
        emb = model.src_embed(src[i: i + 1, :n])
        out, (h, _) = model.encoder.rnn(emb)
        torch.testing.assert_close(state.context[i], out[0, -1])
        torch.testing.assert_close(state.context[i], h[-1, 0])


def test_peeky_wiring() -> None:
    peeky, plain = make(peeky=True), make(peeky=False)
    assert peeky.decoder.rnn.input_size == 8 + 16 and plain.decoder.rnn.input_size == 8
    assert peeky.decoder.output.in_features == 32 and plain.decoder.output.in_features == 16
    # In the peeky decoder the context reaches the output directly at every step: changing
    # the context alone (same initial state) changes the logits; in the plain one it cannot.
    src, src_len = random_batch([4])
    for model, depends in ((peeky, True), (plain, False)):
        state = model.encode(src, src_len)
        logits, _ = model.decode_step(torch.tensor([5]), state)
        state.context = state.context + 1.0
        logits2, _ = model.decode_step(torch.tensor([5]), state)
        assert (not torch.allclose(logits, logits2)) == depends


def test_decoder_init_hidden_starts_from_h_and_a_zero_cell() -> None:
    src, src_len = random_batch([5, 3])
    both, h_only = make(num_layers=2), make(num_layers=2, decoder_init="hidden")  # same weights (seed 0)
    s_both, s_h = both.encode(src, src_len), h_only.encode(src, src_len)
    torch.testing.assert_close(s_h.hidden, s_both.hidden)
    torch.testing.assert_close(s_h.context, s_both.context)
    assert s_both.cell is not None and s_h.cell is not None
    assert s_both.cell.abs().sum() > 0 and s_h.cell.shape == s_both.cell.shape and not s_h.cell.any()
    tgt_in = torch.randint(4, V_TGT, (2, 4))
    assert not torch.allclose(h_only(src, src_len, tgt_in), both(src, src_len, tgt_in))
    # A GRU has no cell state: the option changes nothing.
    gru, gru_h = make(cell="gru"), make(cell="gru", decoder_init="hidden")
    torch.testing.assert_close(gru_h(src, src_len, tgt_in), gru(src, src_len, tgt_in))


@pytest.mark.parametrize("kw", [dict(), dict(cell="gru", num_layers=2), dict(bidirectional=True),
                                dict(attention="luong"), dict(bidirectional=True, encoder_dim=8, attention="luong")],
                         ids=str)
def test_padding_changes_nothing(kw) -> None:
    """Appending padding to a batch, or longer sequences beside it, never changes a
    sequence's encoding, logits or loss."""
    model = make(**kw)
    src, src_len = random_batch([4, 2])
    tgt_in = torch.randint(4, V_TGT, (2, 5))
    tgt_out = torch.randint(4, V_TGT, (2, 5))
    tgt_out[1, 3:] = PAD
    base_state = model.encode(src, src_len)
    base_logits = model(src, src_len, tgt_in)
    # More pad columns, and a longer third sentence in the batch.
    long_src, long_len = random_batch([9], seed=3)
    padded = torch.full((3, 9), PAD, dtype=torch.long)
    padded[:2, :4] = src
    padded[2] = long_src[0]
    padded_len = torch.cat([src_len, long_len])
    tgt_in3 = torch.cat([tgt_in, torch.randint(4, V_TGT, (1, 5))])
    state = model.encode(padded, padded_len)
    torch.testing.assert_close(state.context[:2], base_state.context)
    torch.testing.assert_close(state.hidden[:, :2], base_state.hidden)
    logits = model(padded, padded_len, tgt_in3)[:2]
    torch.testing.assert_close(logits, base_logits, rtol=1e-5, atol=1e-5)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)
    base_loss = torch.nn.functional.cross_entropy(base_logits.flatten(0, 1), tgt_out.flatten(),
                                                  ignore_index=PAD)
    torch.testing.assert_close(loss, base_loss)


def test_state_select_expands_and_reorders() -> None:
    model = make(attention="luong")
    src, src_len = random_batch([3, 5])
    state = model.encode(src, src_len)
    idx = torch.tensor([1, 1, 0])
    sel = state.select(idx)
    assert sel.hidden.shape == (1, 3, 16) and sel.memory is not None and sel.memory.shape[0] == 3
    torch.testing.assert_close(sel.context[0], state.context[1])
    torch.testing.assert_close(sel.context[2], state.context[0])


def test_tied_embeddings_share_storage() -> None:
    model = make(tie_embeddings=True)
    assert model.decoder.output.weight is model.tgt_embed.weight


def _flat_layout(weights: dict) -> dict:
    """Tensor names as checkpoints written before Encoder/Decoder were modules had them."""
    flat = {}
    for key, value in weights.items():
        for new, old in (("encoder.rnn.", "encoder."), ("encoder.", ""), ("decoder.rnn.", "decoder."),
                         ("decoder.attention.score.", "attn_score."),
                         ("decoder.attention.combine.", "attn_combine."), ("decoder.", "")):
            if key.startswith(new):
                key = old + key[len(new):]
                break
        flat[key] = value
    return flat


@pytest.mark.parametrize("kw", [dict(num_layers=2), dict(attention="luong", bidirectional=True),
                                dict(tie_embeddings=True, peeky=False)], ids=str)
def test_flat_layout_state_dict_loads_into_the_same_model(kw) -> None:
    """Checkpoints from before the split (``encoder.weight_ih_l0``, ``output.bias``) load, and
    the parameters keep their order, so a saved optimizer state still lines up."""
    model = make(**kw)
    flat = _flat_layout(model.state_dict())
    assert "encoder.weight_ih_l0" in flat and "output.bias" in flat
    torch.manual_seed(1)
    other = build_model(model.cfg, V_SRC, V_TGT).eval()
    other.load_state_dict(flat)
    src, src_len = random_batch([4, 2])
    tgt_in = torch.randint(4, V_TGT, (2, 3))
    torch.testing.assert_close(other(src, src_len, tgt_in), model(src, src_len, tgt_in))
    order = [k for k, _ in model.named_parameters()]
    legacy = ["src_embed", "tgt_embed", "encoder.rnn", "encoder.bridge", "encoder.memory_proj", "decoder.rnn",
              "decoder.attention.score", "decoder.attention.combine", "decoder.pre_output", "decoder.output"]
    ranks = [next(i for i, p in enumerate(legacy) if k.startswith(p + ".")) for k in order]
    assert ranks == sorted(ranks)  # the order of the flat layout's modules


def test_alignment_is_a_distribution_over_real_source_tokens() -> None:
    model = make(attention="luong", num_layers=2)
    src, src_len = random_batch([5, 3])
    tgt_in = torch.randint(4, V_TGT, (2, 4))
    a = model.alignment(src, src_len, tgt_in)
    assert a.shape == (2, 4, 5)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 4))
    assert (a[1, :, 3:] == 0).all() and (a[1, :, :3] > 0).all()  # padding gets no weight
    # the weights are the ones the decoder used: recomputing its attention read from them matches
    state = model.encode(src, src_len)
    out, _, _, _ = model.decoder._run_rnn(model.tgt_embed(tgt_in), state)
    torch.testing.assert_close(torch.bmm(a, state.memory), model.decoder.attention.read(out, state.memory,
                                                                                       state.memory_mask))
    with pytest.raises(ValueError, match="no attention"):
        make().alignment(src, src_len, tgt_in)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_the_encoders_packing_equals_pytorchs(bidirectional: bool) -> None:
    """model._pack sorts on the CPU to spare a GPU a host sync; outputs, final states and
    gradients equal pack_padded_sequence(enforce_sorted=False)'s, bit for bit."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from seq2seq.model.encoder import _pack

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(8, 16, num_layers=2, batch_first=True, bidirectional=bidirectional)
    emb = torch.randn(7, 9, 8, requires_grad=True)
    lens = torch.tensor([3, 9, 1, 9, 5, 2, 7])
    results = []
    for packed in (pack_padded_sequence(emb, lens, batch_first=True, enforce_sorted=False), _pack(emb, lens)):
        out, (h, c) = lstm(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=9)
        grad = torch.autograd.grad(h.sum() + c.sum() + memory.sum(), emb)[0]
        results.append((h, c, memory, grad))
    assert all(torch.equal(a, b) for a, b in zip(*results))


def count_packing(monkeypatch) -> list[int]:
    """Make the encoder log each time it packs a batch; -> the log (one entry a packing)."""
    from seq2seq.model import encoder as model_module

    packs: list[int] = []
    real_pack = model_module._pack
    monkeypatch.setattr(model_module, "_pack", lambda emb, n: packs.append(1) or real_pack(emb, n))
    return packs


def assert_same_encodings(run1, run2) -> None:
    """Two runs' (hidden, cell, memory, gradients) equal to float64 rounding, None where the other is."""
    (h1, c1, m1, g1), (h2, c2, m2, g2) = run1, run2
    torch.testing.assert_close(h1, h2)
    if c1 is not None:
        torch.testing.assert_close(c1, c2)
    if m1 is not None:
        torch.testing.assert_close(m1, m2)
    assert [a is None for a in g1] == [b is None for b in g2]
    for a, b in zip(g1, g2):
        if a is not None:
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kw", [dict(), dict(cell="gru"), dict(cell="rnn"), dict(bidirectional=True, num_layers=2),
                                dict(attention="luong", num_layers=2)],
                         ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()) or "lstm")
def test_a_batch_without_padding_runs_unpacked_with_the_packed_results(kw, monkeypatch) -> None:
    """Sources all of one length (``train.batch_by: source``) skip packing: one fused RNN call a
    layer. Final states, memory and gradients equal the packed run's (float64)."""
    model = make(num_layers=kw.pop("num_layers", 2), dropout=0.0, **kw).double()
    src, src_len = random_batch([6, 6, 6, 6])
    packs = count_packing(monkeypatch)
    runs = []
    for force_packing in (False, True):
        packs.clear()
        model.train(not force_packing)  # out of training the CPU packs a padded batch (dropout 0: the same model)
        if force_packing:  # one column of padding, so the same sources go through packing
            state = model.encode(torch.cat([src, torch.full((4, 1), PAD)], 1), src_len)
        else:
            state = model.encode(src, src_len)
        assert bool(packs) == force_packing
        loss = state.hidden.sum() + state.context.square().sum()
        if state.cell is not None:
            loss = loss + state.cell.sum()
        if state.memory is not None:
            loss = loss + state.memory[:, :6].square().sum()
        grads = torch.autograd.grad(loss, [*model.encoder.parameters(), model.src_embed.weight], allow_unused=True)
        runs.append((state.hidden, state.cell, None if state.memory is None else state.memory[:, :6], grads))
    assert_same_encodings(*runs)


@pytest.mark.parametrize("kw", [dict(), dict(cell="gru"), dict(cell="rnn", num_layers=1),
                                dict(bidirectional=True, attention="luong"), dict(bidirectional=True, cell="gru"),
                                dict(bidirectional=True, encoder_dim=8, attention="luong")],
                         ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()) or "lstm")
def test_fp32_training_on_the_cpu_runs_each_source_length_fused_with_the_packed_results(kw, monkeypatch) -> None:
    """Training in fp32 on the CPU, a padded batch runs a group of rows of one length at a time,
    unpacked; out of training, and under bf16 autocast, it is packed. Final states, memory and
    gradients equal the packed run's (float64), rows in the batch's order."""
    model = make(num_layers=kw.pop("num_layers", 2), dropout=0.0, **kw).double()
    src, src_len = random_batch([5, 2, 7, 2, 1, 7, 5])
    packs = count_packing(monkeypatch)
    runs = []
    for training in (True, False):
        packs.clear()
        state = model.train(training).encode(src, src_len)
        assert bool(packs) != training
        loss = state.hidden.sin().sum() + state.context.square().sum()
        if state.cell is not None:
            loss = loss + state.cell.cos().sum()
        if state.memory is not None:
            loss = loss + state.memory.tanh().sum()
        grads = torch.autograd.grad(loss, [*model.encoder.parameters(), model.src_embed.weight], allow_unused=True)
        runs.append((state.hidden, state.cell, state.memory, grads))  # memory: zero at padding in both
    assert_same_encodings(*runs)
    packs.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.float().train().encode(src, src_len)
    assert packs, "under bf16 autocast training stays packed"


@pytest.mark.parametrize("p", [0.1, 0.4, 0.9])
def test_cpu_dropout_drops_p_and_keeps_the_expectation(p: float) -> None:
    from seq2seq.model.rnn import Dropout

    drop = Dropout(p).train()
    torch.manual_seed(0)
    x = torch.ones(1_000_000, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.003  # 1e6 draws: sd under 0.0005
    scale = y[kept].unique()
    assert scale.numel() == 1 and abs(scale.item() - 1 / (1 - p)) < 1e-4 * (1 / (1 - p))
    assert abs(y.mean().item() - 1.0) < 0.01
    y.sum().backward()
    assert torch.equal(x.grad, torch.where(kept, scale, torch.zeros(()))), "the gradient goes through kept units"
    # bf16 stays bf16; the same seed, the same mask; a new draw, a new mask; eval and p=0 pass through
    xb = torch.randn(64, 33, dtype=torch.bfloat16)
    torch.manual_seed(1)
    a = drop(xb)
    torch.manual_seed(1)
    assert a.dtype == torch.bfloat16 and torch.equal(a, drop(xb)) and not torch.equal(a, drop(xb))
    assert drop.eval()(xb) is xb and Dropout(0.0).train()(xb) is xb


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_run_rnn_runs_the_layers_with_cpu_dropout_between_them(cell: str, bidirectional: bool, packed: bool,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Training on the CPU, ``run_rnn`` equals the layers run one by one with ``model.dropout``
    between them (the same draws), and, with that dropout made the identity, the RNN's own
    multi-layer call; final states come back in the batch's row order."""
    from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

    from seq2seq.model import rnn as M

    cls = M.CELLS[cell]
    torch.manual_seed(0)
    dirs, L = 2 if bidirectional else 1, 3
    rnn = cls(5, 7, L, batch_first=True, dropout=0.3, bidirectional=bidirectional).double()
    layers = [cls(5 if i == 0 else 7 * dirs, 7, 1, batch_first=True, bidirectional=bidirectional).double()
              for i in range(L)]
    for i, one in enumerate(layers):
        one.load_state_dict({k: getattr(rnn, k.replace("_l0", f"_l{i}")) for k in one.state_dict()})
    x = torch.randn(4, 6, 5, dtype=torch.double)
    inp: Any = pack_padded_sequence(x, torch.tensor([6, 3, 5, 1]), batch_first=True, enforce_sorted=False) \
        if packed else x
    h0, c0 = torch.randn(2, L * dirs, 4, 7, dtype=torch.double)
    hx: Any = (h0, c0) if cell == "lstm" else h0

    def data(y: Any) -> Tensor:
        return y.data if isinstance(y, PackedSequence) else y

    def states(final: Any) -> list[Tensor]:
        return list(final) if isinstance(final, tuple) else [final]

    torch.manual_seed(1)
    out, final = M.run_rnn(rnn, inp, hx)
    torch.manual_seed(1)
    y, finals = inp, []
    for i, one in enumerate(layers):
        if i:
            y = PackedSequence(M.dropout(y.data, 0.3, True), y.batch_sizes, y.sorted_indices, y.unsorted_indices) \
                if isinstance(y, PackedSequence) else M.dropout(y, 0.3, True)
        rows = slice(i * dirs, (i + 1) * dirs)
        y, f = one(y, (h0[rows], c0[rows]) if cell == "lstm" else h0[rows])
        finals.append(states(f))
    assert torch.equal(data(out), data(y)) and type(out) is type(y)
    for got, parts in zip(states(final), zip(*finals)):
        assert torch.equal(got, torch.cat(parts))
    data(out).sum().backward()
    assert all(p.grad is not None for p in rnn.parameters())

    monkeypatch.setattr(M, "dropout", lambda t, p, training: t)
    out, final = M.run_rnn(rnn, inp, hx)
    rnn.dropout = 0.0  # the RNN's own call, without dropout
    ref_out, ref_final = rnn(inp, hx)
    torch.testing.assert_close(data(out), data(ref_out))
    for got, ref in zip(states(final), states(ref_final)):
        torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("kw", [dict(attention="luong", bidirectional=True, num_layers=2), dict(num_layers=2),
                                dict(attention="luong", cell="gru", tie_embeddings=True)], ids=str)
def test_beams_sharing_memory_step_as_rows_of_their_own(kw) -> None:
    """repeat / reorder / keep (one copy of memory per sentence, keys computed once) give the
    logits that gathering every row's own copy gives (select)."""
    model = make(**kw)
    src, src_len = random_batch([5, 3, 4])
    k, g = 3, torch.Generator().manual_seed(1)
    shared = model.encode(src, src_len).repeat(k)  # 9 rows, memory of 3 sentences
    own = model.encode(src, src_len).select(torch.arange(3).repeat_interleave(k))  # 9 rows, 9 memories
    assert shared.group == k and own.group == 1
    if shared.memory is not None:
        assert shared.memory.shape[0] == 3 and own.memory is not None and own.memory.shape[0] == 9
    rows = torch.arange(3 * k)
    for t in range(4):
        prev = torch.randint(4, V_TGT, (rows.numel(),), generator=g)
        a, shared = model.decode_step(prev, shared)
        b, own = model.decode_step(prev, own)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        if t == 0:  # beams reordered within their sentence
            sentence = rows // k
            index = sentence * k + torch.randint(0, k, (rows.numel(),), generator=g)
            shared, own = shared.reorder(index), own.select(index)
        if t == 2:  # the middle sentence leaves the batch
            shared, own = shared.keep(torch.tensor([0, 2])), own.select(torch.tensor([0, 1, 2, 6, 7, 8]))
            rows = torch.arange(2 * k)
    assert shared.keys is not None or kw.get("attention") is None
