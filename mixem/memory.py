"""What the mixture head costs in memory, estimated without torch (the sweep's driver checks a searched K
before any trial starts; the trainer checks the device it got)."""

from __future__ import annotations

from mixem.config import ModelConfig

# The backbones' feature sizes, without building one.
FEATURES = {"resnet18": lambda width: 512, "small_cnn": lambda width: 4 * width}


def head_memory_bytes(cfg: ModelConfig, local_batch: int) -> int:
    """A rough upper estimate of what the mixture head costs in training, the part that grows with K: its
    parameters with their gradients and Adam's two moments, its activations for two views (kept for the
    backward pass), and the associative loss's K x K x D differences of the component means (forward and
    backward), in float32. The backbone's share does not depend on K and is left out."""
    if cfg.head != "mixture":
        return 0
    features, k = FEATURES[cfg.backbone](cfg.cnn_width), cfg.num_components
    parameters = (features * k * cfg.hidden_dim + k * cfg.hidden_dim + k * cfg.hidden_dim * cfg.embed_dim
                  + features * cfg.hidden_dim + cfg.hidden_dim * k)
    activations = 2 * 3 * local_batch * k * (cfg.hidden_dim + cfg.embed_dim + 1)
    push = 2 * 3 * k * k * cfg.embed_dim
    return 4 * (4 * parameters + activations + push)


def memory_problem(cfg: ModelConfig, local_batch: int, available: int, where: str) -> str | None:
    """The sentence that refuses a mixture head which cannot fit in ``available`` bytes of ``where``, or None."""
    needed = head_memory_bytes(cfg, local_batch)
    if needed <= available:
        return None
    return (f"--num-components {cfg.num_components} needs about {needed / 2**30:,.1f} GiB for the mixture head and "
            f"its push term (which grow with K and K squared) at {local_batch} images per step, more than the "
            f"{available / 2**30:.1f} GiB of {where}; lower --num-components or --batch-size.")
