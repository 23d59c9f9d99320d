"""MIX'EM: unsupervised image classification with a mixture of embeddings (Varamesh & Tuytelaars, ACCV 2020)."""

__version__ = "0.1.0"
