"""The names of everything an evaluation measures, and which way each is better.

Importable without torch: the sweep's driver, the Parquet schema and the analysis use these names;
``mixem.evaluate`` computes the values. Two kinds of scores, and the names say which is which:

- label-free, usable to select models without labels: ``<variant>_silhouette`` and the validation
  loss ``val_loss`` with its terms ``val_<term>`` (``VALIDATION_KEYS``);
- measured with the test labels: ``<variant>_{acc,nmi,ari}``, and ``acc_max``, the best ACC of all
  variants, chosen with the labels: an oracle, never a fair score of one method.
"""

from __future__ import annotations

# What ``mixem.losses.mixem_loss`` returns: the weighted total and each term, unweighted.
LOSS_TERMS = ("total", "contrastive", "marginal_entropy", "instance", "pull", "push")
REPRESENTATIONS = ("h", "z", "dom")
NORMS = ("raw", "l2")
LABEL_METRICS = ("acc", "nmi", "ari")
METRICS = (*LABEL_METRICS, "silhouette")
VARIANTS = [f"{method}_{rep}_{norm}" for method in ("kmeans", "compinit") for rep in REPRESENTATIONS for norm in NORMS]
VARIANTS.append("argmax_pi")
# The clustering every sweep and report ranks by unless told otherwise, fixed before any sweep ran:
# the paper's own pipeline, K-means initialised with the mixture components' means ("essential to
# robust and high accuracy", MIX'EM's abstract) on the mixed embedding z that the contrastive loss
# shapes, L2-normalised as the paper's SimCLR baseline. Not chosen by looking at results.
FIXED_VARIANT = "compinit_z_l2"
# The SimCLR head has no mixture components to initialise K-means with: its runs are judged by the same
# clustering without them, k-means++ on the L2-normalised z.
SIMCLR_VARIANT = "kmeans_z_l2"
ORACLE_METRIC = "acc_max"
METRIC_KEYS = [f"{variant}_{metric}" for variant in VARIANTS for metric in METRICS] + [ORACLE_METRIC]
VALIDATION_KEYS = ["val_loss", *(f"val_{term}" for term in LOSS_TERMS if term != "total")]
# The mixture's diagnostics (mixem.evaluate.mixture_diagnostics): the mean of max pi and the components
# argmax pi uses (label-free), and the purity of argmax pi's groups (with the labels).
MIXTURE_DIAGNOSTICS = ("pi_max_mean", "components_used", "component_purity")
# The two clusterings reports are judged by (the fixed variant; k-means++ on z for the SimCLR head), whose
# within-model noise the final evaluation measures: the std of their ACC over K-means random states.
NOISE_VARIANTS = (FIXED_VARIANT, SIMCLR_VARIANT)
NOISE_KEYS = [f"{variant}_acc_seed_std" for variant in NOISE_VARIANTS]
DIAGNOSTIC_KEYS = [*MIXTURE_DIAGNOSTICS, *NOISE_KEYS]
# Every score of an evaluation: the clustering metrics (label-free silhouettes among them), the validation
# loss, and the diagnostics (not scores to optimise: --metric takes METRIC_KEYS and VALIDATION_KEYS).
SCORE_KEYS = METRIC_KEYS + VALIDATION_KEYS + DIAGNOSTIC_KEYS


def reported_variant(head: str) -> str:
    """The one clustering a run of ``head`` is judged by: the fixed variant, or ``SIMCLR_VARIANT`` for SimCLR."""
    return SIMCLR_VARIANT if head == "simclr" else FIXED_VARIANT


def measured_by(key: str, head: str) -> bool:
    """Whether a run of ``head`` measures ``key`` at all: the SimCLR head has no pi, so no component-initialised
    K-means, no argmax pi, no dominant component's embedding, and no mixture loss terms to validate."""
    if head != "simclr":
        return True
    mixture_only = ("compinit_", "argmax_pi", "kmeans_dom_", "val_marginal_entropy", "val_instance", "val_pull",
                    "val_push")
    return not key.startswith(mixture_only)


def metric_mode(key: str) -> str:
    """ "max" or "min": which way ``key`` (a key of ``METRIC_KEYS`` or ``VALIDATION_KEYS``) is better.

    Every clustering score is better higher. Validation losses are better lower, except the
    marginal entropy, which the objective subtracts (term (i): every component in use)."""
    if key in METRIC_KEYS or key == "val_marginal_entropy":
        return "max"
    if key in VALIDATION_KEYS:
        return "min"
    raise KeyError(key)


def is_label_free(key: str) -> bool:
    """Whether ``key`` is computed without the labels (usable to select models in earnest)."""
    return key in VALIDATION_KEYS or key.endswith("_silhouette") or key in ("pi_max_mean", "components_used")
