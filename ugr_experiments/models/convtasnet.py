"""Conv-TasNet (Luo and Mesgarani, 2019) from torchaudio, imported only when it is built.

torchaudio is an optional extra (``pip install -e ".[torchaudio]"``): since 2.9 it is in
maintenance mode and its wheels only import against the torch build they were made for.
:func:`require_torchaudio` checks, before any work, that it is installed, that its version
matches torch's (same major.minor) and that ``torchaudio.models`` imports; otherwise it
raises :class:`TorchaudioUnavailableError` naming the working pairs and the install command.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from types import ModuleType

from torch import Tensor, nn

from ugr_experiments.models.common import as_batch_channel_time

__all__ = ["PRESETS", "TORCHAUDIO_HINT", "ConvTasNet", "TorchaudioUnavailableError"]

# torchaudio's defaults are the best configuration of the Conv-TasNet paper (N=512, L=16,
# B=128, H=512, P=3, X=8, R=3); 4,984,881 parameters for 2 sources.
PRESETS: dict[str, dict[str, int | str]] = {
    "convtasnet_cpu": dict(
        enc_kernel_size=16,
        enc_num_feats=128,
        msk_kernel_size=3,
        msk_num_feats=64,
        msk_num_hidden_feats=128,
        msk_num_layers=6,
        msk_num_stacks=2,
        msk_activate="sigmoid",
        num_sources=2,
    ),
}

TORCHAUDIO_HINT = (
    "working pairs: `torch==2.11.0 torchaudio==2.11.0`, `torch==2.9.1 torchaudio==2.9.*`; "
    "install one (e.g. `pip install torch==2.11.0 torchaudio==2.11.0`), then "
    '`pip install -e ".[torchaudio]"`'
)


class TorchaudioUnavailableError(ImportError):
    """torchaudio is missing or does not match the installed torch."""


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def require_torchaudio() -> ModuleType:
    """``torchaudio.models``, or a clear error when torchaudio is missing or mismatched.

    Raises:
        TorchaudioUnavailableError: naming the installed versions and the working pairs.
    """
    try:
        torch_version = metadata.version("torch")
        audio_version = metadata.version("torchaudio")
    except metadata.PackageNotFoundError:
        raise TorchaudioUnavailableError(
            "model 'convtasnet' needs torchaudio, which is not installed; " + TORCHAUDIO_HINT
        ) from None
    if _major_minor(torch_version) != _major_minor(audio_version):
        raise TorchaudioUnavailableError(
            f"model 'convtasnet' needs a torchaudio built for the installed torch: torch "
            f"{torch_version} with torchaudio {audio_version} does not work; " + TORCHAUDIO_HINT
        )
    try:
        return importlib.import_module("torchaudio.models")
    except Exception as err:  # a build mismatch surfaces as OSError, ImportError, RuntimeError
        raise TorchaudioUnavailableError(
            f"model 'convtasnet': torchaudio {audio_version} fails to import with torch "
            f"{torch_version} ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            + TORCHAUDIO_HINT
        ) from None


class ConvTasNet(nn.Module):
    """torchaudio's ``ConvTasNet`` (same keyword arguments) behind the framework's interface.

    The network is ``self.net`` (state-dict keys ``net.*``); this wrapper accepts ``(B, T)``
    as well as ``(B, 1, T)`` and states ``num_sources`` and ``lcm`` (torchaudio pads the
    input to a whole number of encoder hops, ``enc_kernel_size // 2``).

    Args: as ``torchaudio.models.ConvTasNet``.

    Shape:
        - Input: (B, T) or (B, 1, T)
        - Output: (B, S, T)
    """

    def __init__(
        self,
        num_sources: int = 2,
        enc_kernel_size: int = 16,
        enc_num_feats: int = 512,
        msk_kernel_size: int = 3,
        msk_num_feats: int = 128,
        msk_num_hidden_feats: int = 512,
        msk_num_layers: int = 8,
        msk_num_stacks: int = 3,
        msk_activate: str = "sigmoid",
    ) -> None:
        models = require_torchaudio()
        super().__init__()
        if enc_kernel_size < 2:
            raise ValueError(f"ConvTasNet: enc_kernel_size must be >= 2, got {enc_kernel_size}")
        self.num_sources = num_sources
        self.lcm = enc_kernel_size // 2
        self.net = models.ConvTasNet(
            num_sources=num_sources,
            enc_kernel_size=enc_kernel_size,
            enc_num_feats=enc_num_feats,
            msk_kernel_size=msk_kernel_size,
            msk_num_feats=msk_num_feats,
            msk_num_hidden_feats=msk_num_hidden_feats,
            msk_num_layers=msk_num_layers,
            msk_num_stacks=msk_num_stacks,
            msk_activate=msk_activate,
        )

    def forward(self, wav: Tensor) -> Tensor:
        x, _ = as_batch_channel_time(wav, "ConvTasNet")
        return self.net(x)  # (B, S, T)
