"""Tables, plots and a report from sweep output (``tune/sweep.py``, ``tune/ablate.py``).

    python -m analysis.report sweeps/fashion-mnist                    # writes report.md, report.tex, PNGs

``runs`` loads the Parquet files, ``tables`` holds one function per table, ``plots`` one per
figure, ``report`` writes them all; ``ablation.ipynb`` only calls these.
"""
