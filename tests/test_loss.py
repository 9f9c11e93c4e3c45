"""The fused label-smoothed cross-entropy equals PyTorch's, in value and gradient."""

import pytest
import torch
import torch.nn.functional as F

from seq2seq.data.tokenization import PAD
from seq2seq.model.loss import sequence_loss


def reference(logits: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    return F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), ignore_index=PAD,
                           label_smoothing=eps, reduction="sum")


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("rows", [3, 64, 130])  # within one block of rows, exactly one, across several
def test_equals_pytorch_cross_entropy_in_fp32(eps: float, rows: int) -> None:
    torch.manual_seed(0)
    logits = (torch.randn(rows, 2, 37) * 4).requires_grad_()  # (B, T, V)
    target = torch.randint(0, 37, (rows, 2))
    target[::3, 1] = PAD  # padding positions add nothing
    want = reference(logits, target, eps)
    (want_grad,) = torch.autograd.grad(want, logits)
    got = sequence_loss(logits, target, eps)
    (got_grad,) = torch.autograd.grad(got * 1.0, logits)
    assert got.dtype == torch.float32 and got.shape == ()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-6)
    assert got_grad[::3, 1].abs().max() == 0  # no gradient at padding


def test_upstream_gradient_scales_and_bf16_logits_get_bf16_gradients() -> None:
    torch.manual_seed(1)
    logits = (torch.randn(4, 5, 50) * 3).to(torch.bfloat16).requires_grad_()
    target = torch.randint(1, 50, (4, 5))
    want = reference(logits, target, 0.1)  # PyTorch's, on the same bf16 values widened to fp32
    (want_grad,) = torch.autograd.grad(want * 0.25, logits)
    got = sequence_loss(logits, target, 0.1)
    (got_grad,) = torch.autograd.grad(got * 0.25, logits)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-3)
    assert got_grad.dtype == torch.bfloat16
    torch.testing.assert_close(got_grad.float(), want_grad.float(), rtol=1e-2, atol=1e-4)


def test_all_padding_is_zero_loss_and_zero_gradient() -> None:
    logits = torch.randn(2, 3, 11, requires_grad=True)
    target = torch.full((2, 3), PAD)
    loss = sequence_loss(logits, target, 0.1)
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert logits.grad is not None and float(logits.grad.abs().max()) == 0.0


def test_one_block_as_on_a_gpu_equals_pytorch(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU the rows are one block (every block costs kernel launches); run that path here."""
    from seq2seq.model import loss

    chunks = loss._chunks
    assert chunks(torch.empty(130, 5, device="meta")) == [slice(0, 130)]  # not the CPU: one block
    assert len(chunks(torch.empty(130, 5))) == 3
    monkeypatch.setattr(loss, "_chunks", lambda logits, size=64: [slice(0, logits.shape[0])])
    torch.manual_seed(1)
    logits = (torch.randn(130, 2, 37) * 4).requires_grad_()
    target = torch.randint(0, 37, (130, 2))
    target[::3, 1] = PAD
    want = reference(logits, target, 0.1)
    (want_grad,) = torch.autograd.grad(want, logits)
    got = sequence_loss(logits, target, 0.1)
    (got_grad,) = torch.autograd.grad(got, logits)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-6)
