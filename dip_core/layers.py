"""The paper's building blocks: Lipschitz-controlled conv, Gaussian upsampling, mean-only batch norm."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: For this many training steps the power iteration runs at least 16 iterations per step.
POWER_WARMUP_STEPS = 100
#: Singular vectors the power iteration tracks per weight (a block, or subspace, iteration; docs/method.md §3). One
#: warm-started vector cannot follow a crossing: when another singular value overtakes the tracked one, the vector
#: turns to it at the rate (σ₂/σ₁)² per iteration, so near a tie it stays on the old direction and σ is underestimated
#: (σ(W̃) up to 3.4 % over λ). A block of K turns at (σ_{K+1}/σ₁)² and Rayleigh–Ritz takes the top of its K. Measured
#: worst σ(W̃)/λ − 1 (tests/test_layers.py's run, seeds 0-7, 1 thread, avx2, a 2-core AMD EPYC): K = 1 2.9 %,
#: 2 1.4 %, 3 0.026 %, 4 0.0018 %.
POWER_BLOCK = 4
#: 3×3 convolution algorithms: ``direct`` (oneDNN / cuDNN) or ``winograd`` (NNPACK on CPU, fp32).
CONV_ALGOS = ("direct", "winograd")


def winograd_available() -> bool:
    """NNPACK's Winograd convolution can run here (an x86-64 CPU with AVX2, or ARM NEON)."""
    try:
        return bool(torch._nnpack_available())
    except (AttributeError, RuntimeError):
        return False


class _WinogradConv3x3(torch.autograd.Function):
    """Stride-1 3×3 conv with zero padding ``pad``: forward and input gradient by NNPACK's Winograd transform.

    The input gradient of a stride-1 3×3 conv is itself a 3×3 conv of the output gradient with the
    flipped, transposed kernel, so both take the fast path (about 2× faster than oneDNN on AVX2, relative
    error about 5e-6 against 6e-7); the weight and bias gradients use the ordinary kernel.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pad: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.pad = bias is not None, pad
        return torch._nnpack_spatial_convolution(x, weight, bias, [pad] * 4)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            flipped = weight.flip(2, 3).transpose(0, 1).contiguous()
            grad_x = torch._nnpack_spatial_convolution(grad, flipped, None, [2 - ctx.pad] * 4)
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            mask = [False, bool(ctx.needs_input_grad[1]), ctx.has_bias and bool(ctx.needs_input_grad[2])]
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad, x, weight, [weight.shape[0]], [1, 1], [ctx.pad] * 2, [1, 1], False, [0, 0], 1, mask
            )
        return grad_x, grad_w, grad_b, None


def spectral_norm_exact(weight: torch.Tensor) -> torch.Tensor:
    """Largest singular value of ``weight`` reshaped to C_out × (C_in·k·k), by exact SVD."""
    return torch.linalg.matrix_norm(weight.detach().reshape(weight.shape[0], -1).float(), ord=2)


def power_iterations(power_iters: int, updates: int) -> int:
    """Power iterations for the next training forward: early steps move the weights fast, so track harder."""
    return power_iters if updates >= POWER_WARMUP_STEPS else max(power_iters, 16)


def power_block(rows: int, cols: int) -> int:
    """The power iteration's block for a rows × cols weight: ``POWER_BLOCK`` vectors, fewer for a smaller matrix."""
    return min(POWER_BLOCK, rows, cols)


def _orthonormal_rows(x: torch.Tensor, solver: bool) -> torch.Tensor:
    """The rows of ``x`` (K × n, K ≤ n) orthonormalised in order. With ``solver`` (the CPU) by Householder QR (LAPACK;
    its rows are orthonormal even where x's are dependent, so the block cannot collapse); else by Gram–Schmidt run
    twice per row ("twice is enough": rounding noise left of a dependent row comes out orthogonal too), matmuls and
    elementwise ops only: a solver call (cuSOLVER) would not go into the CUDA graph that holds the training step."""
    if solver:
        return torch.linalg.qr(x.t())[0].t()
    x = x.clone()
    x.diagonal().add_(1e-15)  # a zero row (a zero weight) re-seeds as a unit vector; below rounding on any other
    out = torch.empty_like(x)
    for j in range(x.shape[0]):
        r = x[j]
        if j:
            q = out[:j]
            r = r - (q @ r) @ q
            r = r - (q @ r) @ q
        torch.div(r, torch.linalg.vector_norm(r).clamp_min(1e-30), out=out[j])
    return out


def _top_singular_value(x: torch.Tensor, solver: bool) -> torch.Tensor:
    """σ₁ of a K × n block ``x`` as a 0-d tensor of its dtype: the square root of the top eigenvalue of the K × K Gram
    matrix x xᵀ, in float64. With ``solver`` by LAPACK; else without a solver or a host sync: the trace-normalised
    Gram matrix raised to the power 256 · 64 (eigenvalue ratios to that power: a near tie σ₂/σ₁ = 0.9995 still
    separates), then the Rayleigh quotient of its dominant column (relative error in σ below 3e-5, and never above:
    a Rayleigh quotient underestimates)."""
    gram = (x @ x.t()).double()
    if solver:
        # LAPACK fails on a non-finite matrix (a diverged run's weights): σ is then NaN, as the matmuls give it
        top = torch.linalg.eigvalsh(torch.nan_to_num(gram, 0.0, 0.0, 0.0))[-1] + 0.0 * gram.sum()
        return top.clamp_min(0).sqrt().to(x.dtype)
    power = gram / gram.trace().clamp_min(1e-300)
    for n in (256, 64):  # top eigenvalue ≥ 1/K after each normalisation: no underflow in float64
        power = torch.linalg.matrix_power(power, n)
        power = power / power.trace().clamp_min(1e-300)
    col = power.index_select(1, power.diagonal().argmax().view(1)).squeeze(1)
    return ((col @ gram @ col) / (col @ col).clamp_min(1e-300)).clamp_min(0).sqrt().to(x.dtype)


@torch.no_grad()
def spectral_norm(mat: torch.Tensor, u: torch.Tensor, method: str, iters: int, update: bool) -> torch.Tensor:
    """σ(M) as a 0-d tensor: exact (``method="svd"``), or ``iters`` steps of a block power (subspace) iteration
    warm-started from ``u``, K orthonormal rows spanning M's top left singular subspace so far (K = ``power_block``):
    U ← orth(U M Mᵀ), then σ ≈ σ₁(U M), the largest singular value M has on that subspace (Rayleigh–Ritz: never above
    σ(M)); ``update`` writes the new U back in place. No host sync. The one power iteration of LipschitzConv2d and of
    a stack's grouped conv (dip_core.stacked)."""
    if method == "svd":
        return torch.linalg.matrix_norm(mat, ord=2)
    solver = mat.device.type == "cpu"  # LAPACK on the CPU; elsewhere matmuls only (a CUDA graph holds the step)
    block = u
    with torch.autocast(mat.device.type, enabled=False):  # in M's dtype under a bf16 forward too: σ 0.4 % off in bf16
        for _ in range(iters):  # K × rows rows: (U M) Mᵀ is 4-9× faster on the CPU than Mᵀ U in columns
            block = _orthonormal_rows((block @ mat) @ mat.t(), solver)
        if update:
            u.copy_(block)
        return _top_singular_value(block @ mat, solver)


def paper_init_(conv: nn.Conv2d, generator: torch.Generator | None = None) -> nn.Conv2d:
    """The authors' conv init, drawn from ``generator``: W ~ U(±√(6 / fan_in)) (He-uniform for ReLU,
    kaiming_uniform_ with a = 0) and PyTorch's default bias b ~ U(±1/√fan_in).

    About 2.45× PyTorch's default weight bound; with mean-only BN (no variance normalisation) it sets the signal
    scale through the 12 convs, and so how fast the network fits and whether λ binds from step 1. A generator
    of the run's own (not the global seed) lets two runs build their networks at once, from any thread.
    """
    nn.init.kaiming_uniform_(conv.weight, a=0, mode="fan_in", generator=generator)
    if conv.bias is not None:
        bound = 1 / math.sqrt(conv.weight[0].numel())
        nn.init.uniform_(conv.bias, -bound, bound, generator=generator)
    return conv


class LipschitzConv2d(nn.Conv2d):
    """Conv whose weight is used as W̃ = W / max(1, σ(W)/λ); σ detached, recomputed every forward.

    ``lipschitz=0`` gives a plain convolution (vanilla DIP). ``sn_method`` is ``"svd"`` (exact, as the
    authors) or ``"power"`` (a warm-started block power iteration, its ``POWER_BLOCK`` vectors kept from step to
    step: ``spectral_norm``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        lipschitz: float = 0.0,
        sn_method: str = "power",
        power_iters: int = 2,
        padding_mode: str = "reflect",
        bias: bool = True,
        conv_algo: str = "direct",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            padding=kernel_size // 2,
            padding_mode="zeros" if padding_mode in ("zero", "zeros") else padding_mode,
            bias=bias,
        )
        paper_init_(self, generator)
        assert math.isfinite(lipschitz) and lipschitz >= 0, f"λ must be finite and ≥ 0, got {lipschitz}"  # RunConfig
        assert sn_method in ("svd", "power"), sn_method  # checked it already: these are a programmer's asserts
        self.lipschitz = float(lipschitz)
        self.sn_method = sn_method
        self.conv_algo = conv_algo  # "direct", or "winograd" (see ``uses_winograd``)
        self.power_iters = int(power_iters)
        self._updates = 0  # training forwards so far (host-side: no sync)
        # the power iteration's block (K × C_out, one singular vector a row): the initial weight's exact top K
        self.register_buffer("_u", torch.empty(power_block(out_channels, self.weight[0].numel()), out_channels))
        self.restart_power()

    @torch.no_grad()
    def restart_power(self) -> torch.Tensor:
        """Warm-start the power iteration afresh: its block ← the exact top-K left singular vectors of W, and the
        warm-up again (16 iterations a step for ``POWER_WARMUP_STEPS`` steps). Returns σ(W), exact (0-d)."""
        u, s, _ = torch.linalg.svd(self.weight.detach().reshape(self.weight.shape[0], -1), full_matrices=False)
        self._u.copy_(u[:, : self._u.shape[0]].t())
        self._updates = 0
        return s[0]

    @torch.no_grad()
    def sigma(self) -> torch.Tensor:
        """σ(W) as a 0-d tensor: exact SVD, or ``power_iters`` steps of the warm-started block power iteration."""
        mat = self.weight.detach().reshape(self.weight.shape[0], -1)
        sigma = spectral_norm(
            mat,
            self._u,
            self.sn_method,
            power_iterations(self.power_iters, self._updates),
            update=self.training,
        )
        if self.training and self.sn_method == "power":
            self._updates += 1
        return sigma

    def effective_weight(self) -> torch.Tensor:
        """The weight the conv uses: W / max(1, σ/λ), with σ a constant for backprop (λ a number, or a tensor of a
        graph when the bounds are learned: dip_core.bound.LearnedBounds)."""
        if not isinstance(self.lipschitz, torch.Tensor) and self.lipschitz <= 0:  # a tensor λ: no host sync
            return self.weight
        scale = torch.clamp(self.sigma() / self.lipschitz, min=1.0)
        return self.weight / scale

    def uses_winograd(self, x: torch.Tensor) -> bool:
        """Whether this forward takes the Winograd path (opt-in, CPU fp32 NCHW, 3×3, stride 1)."""
        return (
            self.conv_algo == "winograd"
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and x.dim() == 4
            and x.is_contiguous()
            and self.kernel_size == (3, 3)
            and self.stride == (1, 1)
            and self.dilation == (1, 1)
            and self.groups == 1
            and not torch.is_autocast_enabled("cpu")
            and winograd_available()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.effective_weight()
        if self.uses_winograd(x):
            if self.padding_mode == "zeros":
                return _WinogradConv3x3.apply(x, weight.contiguous(), self.bias, 1)
            x = F.pad(x, (1, 1, 1, 1), mode=self.padding_mode)
            return _WinogradConv3x3.apply(x, weight.contiguous(), self.bias, 0)
        return self._conv_forward(x, weight, self.bias)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """The 5×5 kernel K(i,j) ∝ exp(−(d_i² + d_j²)/(2σ²)), d_i = (i − 3)/2, summing to 1; σ → 0 is a
    delta."""
    d = (torch.arange(5, dtype=torch.float64) - 2) / 2
    if sigma <= 0:
        k1 = (d == 0).double()
    else:
        k1 = torch.exp(-(d**2) / (2 * sigma**2))
    k = torch.outer(k1, k1)
    return k / k.sum()


class GaussianUpsample(nn.Module):
    """×2 upsampling by zero insertion then a fixed depthwise 5×5 Gaussian (a strided transposed conv)."""

    def __init__(self, channels: int, sigma: float) -> None:
        super().__init__()
        assert math.isfinite(sigma) and sigma >= 0, f"Gaussian σ must be finite and ≥ 0, got {sigma}"  # RunConfig
        self.sigma = float(sigma)
        kernel = gaussian_kernel(self.sigma).float()
        self.register_buffer("kernel", kernel.expand(channels, 1, 5, 5).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.kernel.to(x.dtype), stride=2, padding=2, output_padding=1, groups=x.shape[1])


class _CentreAct(torch.autograd.Function):
    """y = act(x − mean_{h,w}(x) + β), its gradient in three passes over the tensor instead of autograd's six.

    act is LeakyReLU(slope) (None: identity). The forward runs autograd's own ops; the backward computes what
    autograd's chain computes, rounding included: g_z = act'(z)·g, ∂β = Σ_{h,w} g_z, ∂x = g_z − Σ_{h,w} g_z / HW
    (the mean's path, −Σ g_z / HW, is exactly the negated sum's, so the curves are bit-identical)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bias: torch.Tensor, slope: float | None) -> torch.Tensor:
        z = (x - x.mean(dim=(2, 3), keepdim=True)) + bias.view(1, -1, 1, 1)  # out of place: bf16 + fp32 → fp32
        if slope is not None:
            z = F.leaky_relu_(z, slope)  # z is ours: in place, and its result tells act' (slope > 0)
        ctx.save_for_backward(z)
        ctx.slope, ctx.x_dtype = slope, x.dtype
        return z

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (y,) = ctx.saved_tensors
        if ctx.slope is not None:
            grad = torch.ops.aten.leaky_relu_backward(grad, y, ctx.slope, True)
        sums = grad.sum(dim=(2, 3), keepdim=True)  # per sample and channel, as autograd reduces them
        grad_bias = None
        if ctx.needs_input_grad[1]:  # summed over the batch as well: one reduction over (0, 2, 3), as sum_to does
            grad_bias = (sums if grad.shape[0] == 1 else grad.sum(dim=(0, 2, 3), keepdim=True)).view(-1)
        if grad.dtype != ctx.x_dtype:  # bf16 autocast: autograd casts before the mean's path, so do we
            grad = grad.to(ctx.x_dtype)
            sums = grad.sum(dim=(2, 3), keepdim=True)
        return grad - sums / (grad.shape[2] * grad.shape[3]), grad_bias, None


class MeanOnlyBatchNorm(nn.Module):
    """y = x − mean_{h,w}(x) + β_c, per sample and channel; no variance, no running statistics. With
    ``negative_slope`` the LeakyReLU that follows it in the decoder is fused in: y = LeakyReLU(x − mean + β)."""

    def __init__(self, channels: int, negative_slope: float | None = None) -> None:
        super().__init__()
        assert negative_slope is None or negative_slope > 0, negative_slope  # act' is read from the output
        self.bias = nn.Parameter(torch.zeros(channels))
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _CentreAct.apply(x, self.bias, self.negative_slope)

    def extra_repr(self) -> str:
        return f"{self.bias.numel()}" + (f", negative_slope={self.negative_slope}" if self.negative_slope else "")
