"""The paper's ablations as data: each preset is a dict of flat config overrides.

The loss ablation adds one term at a time, from plain SimCLR to full MIX'EM; the K-means
ablation needs no preset, since every run evaluates every K-means variant.
"""

_NO_EXTRA_TERMS = {"w_entropy": 0.0, "w_instance": 0.0, "w_pull": 0.0, "w_push": 0.0}
# The authors' configuration (their config.yaml and train.py): term (ii) as 1 - max pi.
_MIXEM = {
    "head": "mixture",
    "w_entropy": 2.0,
    "w_instance": 0.1,
    "instance_form": "max_prob",
    "w_pull": 0.1,
    "w_push": 0.05,
}

ABLATIONS: dict[str, dict] = {
    "simclr": {"head": "simclr", **_NO_EXTRA_TERMS},  # contrastive only
    "mixture_only": {"head": "mixture", **_NO_EXTRA_TERMS},  # + mixture head, no extra terms
    "entropy": {"head": "mixture", **_NO_EXTRA_TERMS, "w_entropy": 2.0},  # + marginal entropy (i)
    "entropy_instance": {**_MIXEM, "w_pull": 0.0, "w_push": 0.0},  # + instance term (ii)
    "mixem": _MIXEM,  # + associative term (iii): full MIX'EM, the authors' configuration
    "mixem_entropy": {**_MIXEM, "instance_form": "entropy"},  # term (ii) as the paper writes it
    "k10": {**_MIXEM, "num_components": 10},
    "k20": {**_MIXEM, "num_components": 20},
    "k40": {**_MIXEM, "num_components": 40},
    # No overrides: the configuration that --space fixes, e.g. a searched one confirmed over seeds.
    "given": {},
}

# The rows of the paper's loss ablation, in order.
LOSS_ABLATION = ["simclr", "mixture_only", "entropy", "entropy_instance", "mixem", "mixem_entropy"]
COMPONENT_ABLATION = ["k10", "k20", "k40"]
